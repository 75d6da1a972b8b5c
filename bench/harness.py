"""The pieces the runner and the self-test share: the bench database, the engine calls, the figures' maths."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [p for p in (str(ROOT), str(ROOT / "bench")) if p not in sys.path]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "antenna_invariants.settings")
SCHEMA_SQL = Path(os.environ.get("ANTENNA_SCHEMA_SQL", ROOT.parent / "shared" / "antenna" / "schema.sql"))


def server_entry() -> dict:
    """Django's DATABASES entry for DATABASE_URL's server, else the embedded PostgreSQL."""
    from antenna_invariants import connection as conn

    return conn.django_database(os.environ.get("DATABASE_URL") or conn.embedded_url())


def create(entry: dict, name: str, schema: str = "mirror") -> dict:
    """A fresh, empty database ``name`` with the mirror's migrations or Antenna's schema.sql; Django uses it."""
    import django
    import psycopg

    from antenna_invariants.connection import url_for, use_database

    django.setup()
    drop(entry, name)
    with psycopg.connect(url_for(entry, "postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    entry = entry | {"NAME": name}
    if schema == "antenna":
        with psycopg.connect(url_for(entry), autocommit=True) as target:
            target.execute(SCHEMA_SQL.read_text(encoding="utf-8"))
        use_database(entry)
    else:
        from django.core.management import call_command

        use_database(entry)
        call_command("migrate", verbosity=0)
    return entry


def existing(entry: dict, name: str) -> dict:
    """An existing bench database ``name`` (kept by an earlier run); Django uses it."""
    import django

    from antenna_invariants.connection import use_database

    django.setup()
    entry = entry | {"NAME": name}
    use_database(entry)
    return entry


def drop(entry: dict, name: str):
    import psycopg
    from django.db import connections

    from antenna_invariants.connection import url_for

    connections.close_all()
    with psycopg.connect(url_for(entry, "postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def load_rules():
    from antenna_invariants.layout import load_rules as load
    from antenna_invariants.rules import RULES

    load()
    return RULES


def scopes_of(entry, projects: list[int]):
    """The scopes a full run checks for a rule: every project and the rows without one, or global."""
    from antenna_invariants.scope import NO_PROJECT, Scope

    if entry.is_global:
        return [Scope(project=None)]
    return [Scope(project=p) for p in projects] + [Scope(project=NO_PROJECT)]


def project_ids() -> list[int]:
    from antenna_invariants.mirror.models import Project

    return list(Project.objects.order_by("pk").values_list("pk", flat=True))


def engine_check(rule_ids=None, grouped: bool = True) -> dict[str, tuple[dict[str, int], float]]:
    """Every rule x scope of a full run through the engine, as the plugin runs them (grouped, unless asked
    not to): {rule: ({scope label: violations}, seconds)}."""
    from antenna_invariants.check import check
    from antenna_invariants.runchecks import Checks

    rules, projects, found, checks = load_rules(), project_ids(), {}, Checks()
    for rule_id in rule_ids or rules:
        entry = rules[rule_id]
        scopes = scopes_of(entry, projects)
        started = time.perf_counter()
        outcomes = [checks.take(entry, s, scopes) if grouped else check(entry, s) for s in scopes]
        found[rule_id] = ({o.scope: o.violations for o in outcomes}, time.perf_counter() - started)
    return found


def floor_check(rule_ids=None) -> dict[str, tuple[int, float]]:
    """Every rule's hand-written floor query, once: {rule: (violations, seconds)}."""
    from django.db import connection
    from floor import floors

    queries, found = floors(), {}
    with connection.cursor() as cursor:
        for rule_id in rule_ids or sorted(queries):
            started = time.perf_counter()
            cursor.execute(queries[rule_id])
            found[rule_id] = (cursor.fetchone()[0], time.perf_counter() - started)
    return found


def engine_repair(rule_id: str, journal_dir: Path) -> int:
    """The one place the bench calls the repair engine, as a full ``--repair --all-projects`` run does: the
    grouped check, then a journaled repair of each failing project; rows fixed."""
    from antenna_invariants.journal import Journal
    from antenna_invariants.repair import repair
    from antenna_invariants.rules import RULES
    from antenna_invariants.runchecks import Checks

    entry, checks, fixed = RULES[rule_id], Checks(), 0
    scopes = scopes_of(entry, project_ids())
    journal = Journal(journal_dir, run=f"bench-{rule_id}")
    for scope in scopes:
        outcome = checks.take(entry, scope, scopes)
        if outcome.status == "failed":
            fixed += repair(entry, scope, outcome, journal).fixed
    return fixed


# --- D1 repair against the per-row loop --------------------------------------------------------------------

SAVE_TRUTH = """
DROP TABLE IF EXISTS bench_truth;
CREATE TABLE bench_truth AS
SELECT o.id, o.determination_id, o.determination_score FROM main_occurrence o
 WHERE o.determination_id IS NOT NULL AND o.id NOT IN (SELECT id FROM bench_planted WHERE rule <> 'F2')
   AND NOT EXISTS (SELECT 1 FROM main_identification i WHERE i.occurrence_id = o.id AND i.taxon_id IS NULL)
 ORDER BY o.id;
ALTER TABLE bench_truth ADD PRIMARY KEY (id);
"""
# the partial saves are spread over every project and deployment: every ninth id first
BREAK = """UPDATE main_occurrence o SET determination_id = NULL, determination_score = NULL
           FROM (SELECT id FROM bench_truth ORDER BY mod(id, 9), id LIMIT %s) t WHERE o.id = t.id RETURNING o.id"""
RESTORE = """UPDATE main_occurrence o
                SET determination_id = t.determination_id, determination_score = t.determination_score
             FROM bench_truth t WHERE o.id = t.id
               AND (o.determination_id, o.determination_score)
                   IS DISTINCT FROM (t.determination_id, t.determination_score)"""
# both repairs start from a rewritten table with fresh statistics: breaking and restoring rows (the RSS figure
# breaks a million) leaves the table and its indexes three times their size, which a plain VACUUM keeps
SETTLE = "VACUUM FULL ANALYZE main_occurrence"


def execute(sql: str, params=None) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def partial_saves(count: int) -> list[int]:
    """Turn ``count`` healthy determined occurrences into D1 partial saves; their ids, in order."""
    from django.db import connection

    execute(RESTORE)
    with connection.cursor() as cursor:
        cursor.execute(BREAK, [count])
        return sorted(row[0] for row in cursor.fetchall())


def determinations(ids: list[int]) -> dict[int, tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, determination_id, determination_score FROM main_occurrence WHERE id = ANY(%s)", [ids]
        )
        return {row[0]: row[1:] for row in cursor.fetchall()}


def compare_repairs(rows: int, loop_rows: int, journal_dir: Path) -> dict:
    """D1: the engine's journaled set-based repair of ``rows`` partial saves, per project, against the per-row
    ORM loop on ``loop_rows`` of them, evenly spaced (its rate), and against one bare UPDATE of the same rows
    (its ceiling); all three start from the same broken state."""
    from perrow import repair_one_by_one

    execute(SAVE_TRUTH)
    ids = partial_saves(rows)
    loop_ids = ids[:: max(1, len(ids) // max(loop_rows, 1))][:loop_rows]  # a sample of all of them, every project
    execute(SETTLE)
    started = time.perf_counter()
    repair_one_by_one(loop_ids)
    loop_seconds = time.perf_counter() - started
    by_loop = determinations(loop_ids)

    load_rules()
    partial_saves(rows)
    violators = d1_violators()  # what the engine will find: these rows and the planted partial saves
    execute(SETTLE)
    bare_fixed, bare_seconds, by_bare = bare_update(violators)

    partial_saves(rows)
    execute(SETTLE)
    started = time.perf_counter()
    fixed = engine_repair("D1", journal_dir)
    engine_seconds = time.perf_counter() - started
    by_engine = determinations(violators)
    truth = dict(zip(ids, (by_engine.get(i) for i in ids), strict=True))
    differ = sum(1 for i in loop_ids if by_loop[i] != by_engine[i])
    wrong = sum(1 for i, value in _truth(ids).items() if truth[i] != value)
    execute(RESTORE)
    engine_rate = fixed / engine_seconds if engine_seconds else 0.0
    loop_rate = len(loop_ids) / loop_seconds if loop_seconds else 0.0
    return {
        "rows": len(ids), "fixed": fixed, "engine_seconds": engine_seconds, "engine_rows_per_s": engine_rate,
        "loop_rows": len(loop_ids), "loop_seconds": loop_seconds, "loop_rows_per_s": loop_rate,
        "speedup": engine_rate / loop_rate if loop_rate else None,
        "bare_rows": bare_fixed, "bare_seconds": bare_seconds,
        "engine_vs_bare": engine_seconds / bare_seconds if bare_seconds else None,
        "loop_vs_engine_differences": differ, "engine_vs_original_differences": wrong,
        "bare_vs_engine_differences": sum(1 for i in violators if by_bare[i] != by_engine[i]),
    }


def d1_violators() -> list[int]:
    from antenna_invariants.rules import RULES
    from antenna_invariants.scope import Scope

    return sorted(RULES["D1"].violations(Scope(project=None)).values_list("pk", flat=True))


def bare_update(ids: list[int]) -> tuple[int, float, dict[int, tuple]]:
    """The ceiling of figure 2: one set-based UPDATE of the D1 violators ``ids`` (found beforehand), writing
    the expected determination: no check, no batches, no locks, no journal.  Timed to the end of the
    statement, then rolled back (the planted partial saves stay for the engine): (rows, seconds, what it wrote)."""
    from django.db import transaction

    from antenna_invariants.determination import write_expected
    from antenna_invariants.mirror.models import Occurrence

    with transaction.atomic():
        started = time.perf_counter()
        fixed = write_expected(Occurrence.objects.filter(pk__any=ids), only_where="o.determination_id IS NULL")
        seconds = time.perf_counter() - started
        written = determinations(ids)
        transaction.set_rollback(True)
    return fixed, seconds, written


def _truth(ids: list[int]) -> dict[int, tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT id, determination_id, determination_score FROM bench_truth WHERE id = ANY(%s)", [ids])
        return {row[0]: row[1:] for row in cursor.fetchall()}


def smoke(name: str, occurrences: int = 4000, violations: int = 5, schema: str = "mirror") -> dict:
    """The harness end to end at a tiny scale, for the self-test: what was planted, what the engine and the
    floor found per rule, and the D1 repair comparison.  The database is dropped afterwards."""
    import tempfile

    from django.db import connection
    from generate import generate, planted

    server = server_entry()
    create(server, name, schema)
    try:
        with connection.cursor() as cursor:
            generate(cursor, occurrences, violations, log=lambda _: None)
            found = {rule: len(ids) for rule, ids in planted(cursor).items()}
        with tempfile.TemporaryDirectory() as journals:
            return {
                "planted": found,
                "engine": {rule: by_scope for rule, (by_scope, _) in engine_check().items()},
                "per_scope": {rule: by_scope for rule, (by_scope, _) in engine_check(grouped=False).items()},
                "floor": {rule: n for rule, (n, _) in floor_check().items()},
                "repair": compare_repairs(300, 100, Path(journals)),
            }
    finally:
        drop(server, name)


if __name__ == "__main__":  # python bench/harness.py NAME [mirror|antenna]: the smoke run, as JSON
    import json

    print(json.dumps(smoke(sys.argv[1], schema=sys.argv[2] if len(sys.argv) > 2 else "mirror")))
