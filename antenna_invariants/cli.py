"""``antenna-invariants [pytest options]``: run the rules as installed, from any directory.

pytest runs on the package's own rules with this package's plugin and Django settings, whatever the current
directory's pytest configuration or the shell's ``DJANGO_SETTINGS_MODULE`` say (run inside Antenna's checkout,
its pyproject.toml would otherwise bring ``--ds=config.settings.test``).  The database is ``DATABASE_URL`` or,
without it, the demo on the embedded PostgreSQL; reports go to ./reports.  Options and exit codes are those of
``pytest invariants`` (README).
"""

from __future__ import annotations

import os
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from antenna_invariants.layout import INVARIANTS_DIR

SETTINGS = "antenna_invariants.settings"
# What the checkout's [tool.pytest.ini_options] sets for an invariants run.
INI = {
    "junit_family": "xunit2",
    "render_collapsed": "passed",
    "filterwarnings": "ignore::DeprecationWarning:pgserver.*\nignore::UserWarning:platformdirs.*",
}


NODE = re.compile(r"invariants(/|::|$)")


def pytest_arguments(argv: list[str]) -> list[str]:
    """pytest's arguments.  The root is the rules' parent directory in a checkout and installed alike, so node
    ids (``invariants/test_occurrences.py::test_…[D1-project5]``) and JUnit class names are the same in both,
    and a node id printed by a run selects that case when given back.  pytest's cache (``--lf``, ``--ff``) is
    ``./.pytest_cache``."""
    root = INVARIANTS_DIR.parent
    argv = [str(root / arg) if NODE.match(arg) else arg for arg in argv]
    paths = [] if any(str(arg).startswith(str(INVARIANTS_DIR)) for arg in argv) else [str(INVARIANTS_DIR)]
    fixed = [*paths, "-c", os.devnull, "--rootdir", str(root), "-p", "antenna_invariants.plugin", f"--ds={SETTINGS}"]
    fixed += [f"--override-ini={name}={value}" for name, value in INI.items()]
    fixed += [f"--override-ini=cache_dir={Path.cwd() / '.pytest_cache'}"]
    return fixed + argv


def version() -> str:
    return f"antenna-invariants {metadata.version('antenna-invariants')} (pytest {pytest.__version__})"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["gate"]:  # the post-job gate (antenna_invariants/gate.py), not a pytest run
        from antenna_invariants.gate import main as gate

        return gate(argv[1:])
    if "--version" in argv or "-V" in argv:
        print(version())
        return 0
    return int(pytest.main(pytest_arguments(argv)))


if __name__ == "__main__":
    sys.exit(main())
