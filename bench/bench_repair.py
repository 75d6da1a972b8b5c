"""Benchmark: D1 and F1 check and repair through the engine, at Antenna-like sizes.

    python bench/bench_repair.py --occurrences 5500 550000

Builds a scratch database ``antenna_bench`` (mirror migrations) on DATABASE_URL's server or the embedded
PostgreSQL, fills it set-based (every occurrence classified, a share of them partial saves and phantoms),
then times the rule checks and the journaled repairs.  The baseline to beat is Antenna's per-row repair
(research/seed-baseline.md): about 185 rows/s; a hand-written set-based UPDATE did about 53,000 rows/s.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "antenna_invariants.settings")

FILL = """
INSERT INTO main_project (id, created_at, updated_at, name, description, draft, feature_flags, active, priority,
    session_time_gap_seconds, default_filters_score_threshold)
VALUES (1, now(), now(), 'bench', '', false, '{}', true, 1, 7200, 0.5);
INSERT INTO main_deployment (id, created_at, updated_at, name, description, project_id) VALUES (1, now(), now(), 'd', '', 1);
INSERT INTO main_event (id, created_at, updated_at, group_by, start, deployment_id, project_id)
VALUES (1, now(), now(), '2024-06-01', '2024-06-01 21:00', 1, 1);
INSERT INTO ml_algorithm (id, created_at, updated_at, name, key, description, version, task_type)
VALUES (1, now(), now(), 'det', 'det', '', 1, 'detection'), (2, now(), now(), 'cls', 'cls', '', 1, 'classification');
INSERT INTO main_taxon (id, created_at, updated_at, name, display_name, rank, parents_json, active, author, notes)
SELECT g, now(), now(), 'taxon ' || g, 'taxon ' || g, 'SPECIES', '[]', true, '', '' FROM generate_series(1, 500) g;
INSERT INTO main_sourceimage (id, created_at, updated_at, path, "timestamp", test_image, project_id, deployment_id, event_id)
SELECT g, now(), now(), 'img/' || g || '.jpg', '2024-06-01 21:10', false, 1, 1, 1 FROM generate_series(1, %(n)s) g;
INSERT INTO main_occurrence (id, created_at, updated_at, determination_id, determination_score, event_id, deployment_id, project_id)
SELECT g, now(), now(), CASE WHEN g %% 10 = 0 THEN NULL ELSE 1 + g %% 500 END,
       CASE WHEN g %% 10 = 0 THEN NULL ELSE 0.8 END, 1, 1, 1 FROM generate_series(1, %(n)s) g;
INSERT INTO main_detection (id, created_at, updated_at, source_image_id, bbox, "timestamp", occurrence_id, detection_algorithm_id)
SELECT g, now(), now(), g, CASE WHEN g %% 50 = 7 THEN NULL ELSE '[1, 2, 30, 40]'::jsonb END, '2024-06-01 21:10', g, 1
FROM generate_series(1, %(n)s) g;
INSERT INTO main_classification (id, created_at, updated_at, detection_id, taxon_id, score, "timestamp", terminal, algorithm_id)
SELECT g, now(), now(), g, 1 + g %% 500, 0.8, now(), true, 2 FROM generate_series(1, %(n)s) g;
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--occurrences", type=int, nargs="+", default=[5500, 55000])
    parser.add_argument("--all-rules", action="store_true", help="also time every rule's check at each size")
    args = parser.parse_args()

    import django
    import psycopg

    from antenna_invariants import connection as conn

    url = os.environ.get("DATABASE_URL") or conn.embedded_url()
    entry = conn.django_database(url) | {"NAME": "antenna_bench"}
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from antenna_invariants.journal import Journal
    from antenna_invariants.layout import load_rules
    from antenna_invariants.plugin import use_database
    from antenna_invariants.rules import RULES, check, repair
    from antenna_invariants.scope import Scope

    load_rules()
    print("rows | D1 check | D1 repair (rows, s, rows/s) | F1 check | F1 repair (rows, s, rows/s) | peak RSS")
    for n in args.occurrences:
        with psycopg.connect(conn.url_for(entry, "postgres"), autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS antenna_bench WITH (FORCE)")
            admin.execute("CREATE DATABASE antenna_bench")
        use_database(entry)
        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute(FILL, {"n": n})
            cursor.execute("ANALYZE")
        scope = Scope(project=1)
        if args.all_rules:
            timings = []
            for entry in RULES.values():
                started = time.perf_counter()
                check(entry, Scope(project=None) if entry.is_global else scope)
                timings.append((time.perf_counter() - started, entry.id))
            slowest = ", ".join(f"{rule_id} {took:.2f}s" for took, rule_id in sorted(timings, reverse=True)[:8])
            print(f"{n} rows: all {len(timings)} rules checked in {sum(t for t, _ in timings):.2f} s; slowest: {slowest}")
        cells = [str(n)]
        with tempfile.TemporaryDirectory() as journals:
            for rule_id in ("D1", "F1"):
                started = time.perf_counter()
                outcome = check(RULES[rule_id], scope)
                cells.append(f"{time.perf_counter() - started:.3f} s ({outcome.violations} violating)")
                started = time.perf_counter()
                repair(RULES[rule_id], scope, outcome, Journal(Path(journals)))
                took = time.perf_counter() - started
                cells.append(f"{outcome.fixed} in {took:.2f} s = {outcome.fixed / took:,.0f}/s (remaining {outcome.remaining})")
        cells.append(f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        print(" | ".join(cells), flush=True)
        connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
