"""Where the rules, the demo's factories and the reports are: in a checkout, or in an installed wheel.

In the repository the rules are the top-level package ``invariants`` and the factories ``fixtures``: pytest
collects ``invariants/`` from the checkout's root and imports its files by those names.  The wheel ships the
same two directories inside this package, as ``antenna_invariants.invariants`` and
``antenna_invariants.fixtures`` (setuptools ``package-dir``, see pyproject.toml), so that installing it into an
environment such as Antenna's adds no generic top-level name.  Every module is imported under the one name the
layout gives it, so a rule is never registered twice.

Kept free of Django imports (the settings module imports ``connection``, which uses this).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT = PACKAGE_DIR.parent
IN_CHECKOUT = (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "invariants" / "__init__.py").is_file()


def _home(name: str) -> tuple[str, Path]:
    if IN_CHECKOUT:
        return name, CHECKOUT / name
    return f"{__package__}.{name}", PACKAGE_DIR / name


RULES_PACKAGE, INVARIANTS_DIR = _home("invariants")
FIXTURES_PACKAGE, FIXTURES_DIR = _home("fixtures")
# installed: ./reports and a per-user embedded PostgreSQL, never a directory inside site-packages
REPORTS_DIR = CHECKOUT / "reports" if IN_CHECKOUT else Path("reports")
PGDATA_DIR = (
    CHECKOUT / ".pgdata"
    if IN_CHECKOUT
    else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "antenna-invariants" / "pgdata"
)


def _import(package: str, name: str) -> ModuleType:
    if IN_CHECKOUT and str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))  # what pytest's rootdir import does for a session started elsewhere
    return importlib.import_module(f"{package}.{name}")


def load_rules() -> None:
    """Import every rule module, so the registry (and the markers) are complete before collection."""
    for path in sorted(INVARIANTS_DIR.glob("test_*.py")):
        _import(RULES_PACKAGE, path.stem)


def fixtures_module(name: str) -> ModuleType:
    """A module of the factories and scenarios, e.g. ``fixtures_module("demo")``."""
    return _import(FIXTURES_PACKAGE, name)
