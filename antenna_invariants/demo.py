"""The demo database on the embedded PostgreSQL: our migrations plus fixtures/demo.py's seeded defects.

Rebuilt when missing, when ``--reset-demo`` is given, or when the seed code or migrations changed (a
fingerprint is kept in the database's comment).
"""

from __future__ import annotations

import hashlib

import psycopg
from django.core.management import call_command
from django.db import connection, transaction

from antenna_invariants.connection import url_for
from antenna_invariants.layout import FIXTURES_DIR, PACKAGE_DIR, fixtures_module

STAMP = "antenna-invariants demo "


def fingerprint() -> str:
    digest = hashlib.sha256()
    for base in (FIXTURES_DIR, PACKAGE_DIR / "mirror"):  # the same stamp from a checkout and from the wheel
        for path in sorted(base.glob("**/*.py")):
            digest.update(path.read_bytes())
    return STAMP + digest.hexdigest()[:16]


def ensure(reset: bool = False) -> bool:
    """Make sure the demo database exists and is current; returns True when it was (re)built."""
    settings = connection.settings_dict
    name, stamp = settings["NAME"], fingerprint()
    with psycopg.connect(url_for(settings, "postgres"), autocommit=True) as admin:
        row = admin.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if row is not None and row[0] == stamp and not reset:
            return False
        connection.close()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    call_command("migrate", verbosity=0)
    with transaction.atomic():
        fixtures_module("demo").build()
    with connection.cursor() as cursor:
        cursor.execute(f"COMMENT ON DATABASE \"{name}\" IS '{stamp}'")
    connection.close()
    return True
