"""``antenna-invariants [pytest options]``: run the rules as installed, from any directory.

pytest runs on the package's own rules with this package's plugin and Django settings, whatever the current
directory's pytest configuration or the shell's ``DJANGO_SETTINGS_MODULE`` say (run inside Antenna's checkout,
its pyproject.toml would otherwise bring ``--ds=config.settings.test``).  The database is ``DATABASE_URL`` or,
without it, the demo on the embedded PostgreSQL; reports go to ./reports.  Options and exit codes are those of
``pytest invariants`` (README).
"""

from __future__ import annotations

import os
import sys

import pytest

from antenna_invariants.layout import INVARIANTS_DIR, PACKAGE_DIR

SETTINGS = "antenna_invariants.settings"
# What the checkout's [tool.pytest.ini_options] sets for an invariants run.
INI = {
    "junit_family": "xunit1",
    "render_collapsed": "passed",
    "filterwarnings": "ignore::DeprecationWarning:pgserver.*\nignore::UserWarning:platformdirs.*",
}


def pytest_arguments(argv: list[str]) -> list[str]:
    fixed = [str(INVARIANTS_DIR), "-c", os.devnull, "--rootdir", str(PACKAGE_DIR.parent)]
    fixed += ["-p", "antenna_invariants.plugin", "-p", "no:cacheprovider", f"--ds={SETTINGS}"]
    fixed += [f"--override-ini={name}={value}" for name, value in INI.items()]
    return fixed + argv


def main(argv: list[str] | None = None) -> int:
    return int(pytest.main(pytest_arguments(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())
