"""Which PostgreSQL we talk to: ``DATABASE_URL`` (read once, ``database_url``), or an embedded server shipped
in a wheel (pgserver); the URL as Django settings; pointing Django's connection at them (``use_database``).

Kept free of module-level Django imports so the settings module can use it.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from antenna_invariants.errors import ConfigError
from antenna_invariants.layout import CHECKOUT, PGDATA_DIR

ROOT = CHECKOUT  # the repository checkout (the self-tests and bench/ use it)
EMBEDDED_DIR = Path(os.environ.get("INVARIANTS_PGDATA") or PGDATA_DIR)
DEMO_DATABASE = "antenna_demo"


@cache
def database_url() -> str | None:
    """``DATABASE_URL`` as the process started with it (the one place it is read; empty counts as unset)."""
    return os.environ.get("DATABASE_URL") or None


# Planner settings for every session (a DATABASE_URL's own options come after, so they win):
# - no JIT: it compiled each big-looking check query for seconds, longer than it ran;
# - random_page_cost 1.1 (default 4, a spinning disk): the tables are read from cache or SSD, and at the
#   default PostgreSQL scans a whole table where a project's rows are a few index probes away: a run scoped
#   to one project took 13.4 s instead of 9.1 s, a repair batch hashed whole tables (docs/benchmarks.md).
PLANNER = "-c jit=off -c random_page_cost=1.1"
TEST_DATABASE = {"NAME": os.environ.get("INVARIANTS_TEST_DB", "test_invariants")}


MASK = "****"
URL_PASSWORD = re.compile(r"(\b[a-z][\w+.-]*:/*[^:/@\s]*:)[^@\s]*(@)", re.IGNORECASE)
KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&]+)", re.IGNORECASE)


def passwords_in(url: str | None) -> set[str]:
    """Every string that could be the password of ``url``, read liberally, so that even a URL libpq refuses
    (a misspelt scheme, an unencoded space, a bad ``%`` escape, an unclosed ``[``, an unclosed quote) gives
    its password up for masking: ``user:PASSWORD@`` up to the last ``@``, and ``password=`` values."""
    if not url:
        return set()
    found = {value.strip("'") for _, value in KEYWORD_PASSWORD.findall(url)}
    authority = re.sub(r"^[\w+.-]*:/*", "", url.strip(), count=1)
    userinfo = authority.rpartition("@")[0] if "@" in authority else ""
    if ":" in userinfo:
        found.add(userinfo.split(":", 1)[1])
    found |= {unquote(value) for value in found}
    return {value for value in found if value}


def mask(text: str, *urls: str | None) -> str:
    """``text`` with every password masked: any ``scheme://user:password@`` or ``password=...``, and every
    password of ``urls`` and of ``DATABASE_URL`` wherever it appears.  The one function every message,
    header and report that could show a URL or a connection string goes through."""
    text = KEYWORD_PASSWORD.sub(rf"\g<1>{MASK}", URL_PASSWORD.sub(rf"\g<1>{MASK}\g<2>", str(text)))
    for secret in sorted(set().union(*map(passwords_in, (*urls, database_url()))), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def django_database(url: str) -> dict[str, Any]:
    """Translate a postgres:// URL (or libpq key=value string) into Django's DATABASES entry."""
    if not url:
        return {"ENGINE": "django.db.backends.postgresql", "NAME": "", "TEST": dict(TEST_DATABASE)}

    try:
        if re.match(r"postgres(ql)?://", url) and re.search(r"\s", url.strip()):
            # older libpq builds (psycopg 3.1's) accept the space and fail later, at name resolution
            raise ValueError("a URL cannot contain white space (percent-encode it: %20)")
        info = conninfo_to_dict(url)
    except Exception as exc:  # psycopg raises ProgrammingError with a one-line message
        raise ConfigError(mask(f"DATABASE_URL is not a PostgreSQL URL: {exc}", url)) from None
    options = {k: v for k, v in info.items() if k not in {"dbname", "user", "password", "host", "port", "options"}}
    given = info.get("options")
    options["options"] = " ".join(filter(None, [PLANNER, str(given) if given else None]))
    options.setdefault("connect_timeout", "10")  # a server that drops packets is an error, not a hang
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": info.get("dbname", "postgres"),
        "USER": info.get("user", ""),
        "PASSWORD": info.get("password", ""),
        "HOST": info.get("host", ""),
        "PORT": info.get("port", ""),
        "OPTIONS": options,
        "TEST": dict(TEST_DATABASE),
    }


def with_settings(entry: dict[str, Any], **settings: str) -> dict[str, Any]:
    """The same database, with these server settings for the whole session (``-c name=value``)."""
    options = dict(entry.get("OPTIONS", {}))
    given = [f"-c {name}={value}" for name, value in settings.items()]
    options["options"] = " ".join(filter(None, [options.get("options"), *given]))
    return entry | {"OPTIONS": options}


def read_only_settings(entry: dict[str, Any]) -> dict[str, Any]:
    """The same database, but every transaction of the session is read-only (PostgreSQL enforces it)."""
    return with_settings(entry, default_transaction_read_only="on")


def url_for(settings: dict[str, Any], dbname: str | None = None) -> str:
    """A libpq conninfo string for a Django DATABASES entry (used to hand a database to a subprocess)."""
    parts = {
        "dbname": dbname or settings["NAME"],
        "user": settings.get("USER") or None,
        "password": settings.get("PASSWORD") or None,
        "host": settings.get("HOST") or None,
        "port": settings.get("PORT") or None,
        **settings.get("OPTIONS", {}),
    }
    return make_conninfo(**{k: v for k, v in parts.items() if v})


def embedded_url() -> str:
    """Start (or join) the embedded PostgreSQL and return its URL."""
    try:
        import pgserver  # the [demo] extra: optional
    except ImportError:
        raise ConfigError(
            "no DATABASE_URL, and the embedded PostgreSQL for the demo is not installed: "
            "set DATABASE_URL, or pip install 'antenna-invariants[demo]'"
        ) from None
    EMBEDDED_DIR.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(EMBEDDED_DIR, cleanup_mode="stop")
    _EMBEDDED["server"] = server  # keep a reference: the server stops when the last user lets go
    return server.get_uri()


_EMBEDDED: dict[str, Any] = {}


def use_database(settings: dict[str, Any]) -> None:
    """Point Django's default connection at ``settings`` (a DATABASES entry; before or between connections)."""
    from django.conf import settings as django_settings
    from django.db import connections

    connections.close_all()
    targets = (django_settings.DATABASES["default"], connections["default"].settings_dict)
    for target in {id(d): d for d in targets}.values():
        target.update({k: v for k, v in settings.items() if k != "TEST"})
