"""EXPLAIN (ANALYZE, BUFFERS) every rule's count query for one project scope, and flag sequential scans of
big tables: what a run scoped to one project (``--project``) pays for each rule.  A full run checks each rule
once for every project (grouped, ``check.check_grouped``), so there a sequential scan is read once, not once
per project.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wt6_antenna_bench python bench/explain.py [--project ID]
        [--rules G1 N7 ...] [--plans]

Runs on an existing database (e.g. one kept with ``bench/run.py --keep``).  Prints one line per rule: the
execution time, the shared buffers read, and the big tables read sequentially; ``--plans`` prints the full
plans too.  A Seq Scan is flagged when its table holds more than ``--big`` rows (planner estimate).
"""

from __future__ import annotations

import argparse
import json
import sys

import harness

BIG = 10_000


def count_sql(queryset) -> str:
    """The COUNT the engine runs, as one statement with the parameters inlined."""
    from antenna_invariants.check import compiled_sql

    return f"SELECT count(*) FROM ({compiled_sql(queryset)}) q"


def seq_scans(plan: dict, sizes: dict[str, float], big: int) -> set[str]:
    found = set()
    if plan.get("Node Type") == "Seq Scan" and sizes.get(plan["Relation Name"], 0) > big:
        found.add(plan["Relation Name"])
    for child in plan.get("Plans", []):
        found |= seq_scans(child, sizes, big)
    return found


def explain(sql: str) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
        (result,) = cursor.fetchone()
    return (json.loads(result) if isinstance(result, str) else result)[0]


def table_sizes() -> dict[str, float]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reltuples FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
        )
        return dict(cursor.fetchall())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=int, help="the project scope (default: the middle project)")
    parser.add_argument("--rules", nargs="*", help="only these rule ids")
    parser.add_argument("--big", type=int, default=BIG, help="rows above which a Seq Scan is flagged")
    parser.add_argument("--plans", action="store_true", help="print every plan in full")
    parser.add_argument("--json", help="write the per-rule findings to this file")
    args = parser.parse_args()

    import django

    from antenna_invariants.connection import use_database
    from antenna_invariants.scope import Scope

    django.setup()
    use_database(harness.server_entry())
    rules, projects, sizes = harness.load_rules(), harness.project_ids(), table_sizes()
    project = args.project or projects[len(projects) // 2]
    findings = {}
    for rule_id in args.rules or sorted(rules):
        entry = rules[rule_id]
        scope = Scope(project=None if entry.is_global else project)
        plan = explain(count_sql(entry.violations(scope)))
        top = plan["Plan"]
        findings[rule_id] = {
            "scope": scope.label,
            "ms": round(plan["Execution Time"], 1),
            "shared_read": top.get("Shared Read Blocks", 0),
            "shared_hit": top.get("Shared Hit Blocks", 0),
            "seq_scans": sorted(seq_scans(top, sizes, args.big)),
        }
        f = findings[rule_id]
        flag = "  SEQ SCAN " + ", ".join(f["seq_scans"]) if f["seq_scans"] else ""
        buffers = f"hit {f['shared_hit']:>8} read {f['shared_read']:>7}"
        print(f"{rule_id:5} {f['scope']:10} {f['ms']:9.1f} ms  {buffers}{flag}",
              flush=True)
        if args.plans:
            print(json.dumps(top, indent=1))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"project": project, "big": args.big, "rules": findings}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
