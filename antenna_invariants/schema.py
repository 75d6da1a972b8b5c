"""The mirror against a real database: every mirrored table and column must exist there, compatibly.

``guard()`` runs before any rule touches a live database (missing table or column -> one line, exit 4);
``differences()`` is the stricter comparison the compatibility self-test runs against Antenna's schema.sql.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.db import connection
from django.db.models import Model

from antenna_invariants.errors import ConfigError

LIVE_COLUMNS_SQL = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.atthasdef OR a.attidentity <> '' AS has_default
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
   AND c.relname = ANY(%s)
"""

TYPE_ALIASES = {
    "varchar": "character varying",
    "serial": "integer",
    "bigserial": "bigint",
    "timestamptz": "timestamp with time zone",
}


def mirror_models() -> list[type[Model]]:
    """Mirrored models plus the auto-created M2M tables."""
    return list(apps.get_app_config("antenna").get_models(include_auto_created=True))


def mirror_columns() -> dict[str, dict[str, tuple[str, bool]]]:
    """{table: {column: (type, nullable)}} as the mirror declares them."""
    tables: dict[str, dict[str, tuple[str, bool]]] = {}
    for model in mirror_models():
        columns = tables.setdefault(model._meta.db_table, {})
        for field in model._meta.concrete_fields:
            columns[field.column] = (_normalise(field.db_type(connection)), field.null)
    return tables


def _normalise(db_type: str) -> str:
    db_type = db_type.split(" CHECK")[0].strip().lower()
    for short, long in TYPE_ALIASES.items():
        if db_type == short or db_type.startswith(short + "(") or db_type.startswith(short + "["):
            db_type = long + db_type[len(short):]
    return db_type


def live_columns(cursor: Any, tables: Iterable[str]) -> dict[str, dict[str, tuple[str, bool, bool]]]:
    """{table: {column: (type, nullable, has_default)}} in the database behind ``cursor`` (any DB-API cursor)."""
    cursor.execute(LIVE_COLUMNS_SQL, [list(tables)])
    rows = cursor.fetchall()
    live: dict[str, dict[str, tuple[str, bool, bool]]] = {}
    for table, column, db_type, not_null, has_default in rows:
        live.setdefault(table, {})[column] = (db_type, not not_null, has_default)
    return live


def missing(
    mirror: dict[str, dict[str, tuple[str, bool]]], live: dict[str, dict[str, tuple[str, bool, bool]]]
) -> list[str]:
    problems = []
    for table, columns in sorted(mirror.items()):
        if table not in live:
            problems.append(f"table {table} is missing")
            continue
        problems += [f"column {table}.{c} is missing" for c in sorted(columns) if c not in live[table]]
    return problems


def differences(cursor: Any) -> list[str]:
    """Everything that makes the mirror incompatible with the schema behind ``cursor``."""
    mirror = mirror_columns()
    live = live_columns(cursor, mirror)
    problems = missing(mirror, live)
    for table, columns in sorted(mirror.items()):
        for column, (db_type, nullable) in sorted(columns.items()):
            if column not in live.get(table, {}):
                continue
            live_type, live_nullable, _ = live[table][column]
            if db_type != live_type:
                problems.append(f"column {table}.{column} is {live_type}, the mirror says {db_type}")
            if nullable != live_nullable:
                problems.append(f"column {table}.{column} nullable={live_nullable}, the mirror says {nullable}")
        for column, (_, live_nullable, has_default) in sorted(live.get(table, {}).items()):
            if column not in columns and not live_nullable and not has_default:
                problems.append(f"column {table}.{column} is NOT NULL without a default but not in the mirror")
    return problems


def guard() -> None:
    """Stop the run when a mirrored table or column is missing from the live database."""
    mirror = mirror_columns()
    with connection.cursor() as cursor:
        problems = missing(mirror, live_columns(cursor, mirror))
    if len(problems) == len(mirror) and all(p.startswith("table ") for p in problems):
        name = connection.settings_dict["NAME"]
        raise ConfigError(f"database {name!r} has none of Antenna's tables: is it Antenna's database?")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(f"schema drift: {problems[0]}{more}")


def refuse_read_only_server() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')")
        in_recovery, read_only = cursor.fetchone()
    if in_recovery:
        raise ConfigError("--repair refused: the server is a hot standby (read-only); repair on the primary")
    if read_only == "on":
        raise ConfigError("--repair refused: the database is read-only (default_transaction_read_only=on)")
