"""Build the bench database, measure the five figures in one run, print a table, write bench/results.json.

    python bench/run.py --occurrences 1000000 --violations 1000          # the real run (see docs/benchmarks.md)
    python bench/run.py --occurrences 20000 --violations 5 --repair-rows 2000 --rss 10 1000   # a quick one

On DATABASE_URL's server (database ``--name``, dropped at the end unless --keep) or the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness

# The peak of this process alone: VmHWM, which exec resets.  getrusage's ru_maxrss is not: Linux carries the
# parent's peak across fork and exec, so a bench holding a million ids would be counted in the child's figure.
RSS_SCRIPT = """import resource, sys, pytest
code = pytest.main(sys.argv[1:])
try:
    status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
except (OSError, IndexError):
    status = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("PEAK_RSS_KB", status)
"""


def pytest_run(url: str, *args: str) -> tuple[float, int, dict]:
    """``pytest invariants *args`` in a subprocess on ``url``: (seconds, peak RSS in MB, invariants.json)."""
    with tempfile.TemporaryDirectory() as reports:
        command = [sys.executable, "-c", RSS_SCRIPT, "invariants", "-q", "-p", "no:cacheprovider", "--reports", reports,
                   *args]
        started = time.perf_counter()
        env = os.environ | {"DATABASE_URL": url}
        done = subprocess.run(command, check=False, cwd=harness.ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode not in (0, 1):
            tail = f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
            raise RuntimeError(f"pytest {' '.join(args)} exited {done.returncode}:\n{tail}")
        rss = next(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("PEAK_RSS_KB"))
        report = json.loads((Path(reports) / "invariants.json").read_text())
    return seconds, rss // 1024, report


def machine() -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0]
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    server = "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded"
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": memory, "postgres": version,
            "server": server, "python": platform.python_version()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--occurrences", type=int, default=1_000_000)
    parser.add_argument("--violations", type=int, default=1000, help="planted violations per rule")
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--interleaved", action="store_true",
                        help="deal the captures to the deployments in turn (every project on every page)")
    parser.add_argument("--schema", choices=["mirror", "antenna"], default="antenna",
                        help="build from the mirror's migrations or from Antenna's schema.sql (its real indexes)")
    parser.add_argument("--repair-rows", type=int, default=100_000)
    parser.add_argument("--loop-rows", type=int, default=5_000, help="rows the per-row baseline repairs (its rate)")
    parser.add_argument("--rss", type=int, nargs="*", default=[10, 10_000, 1_000_000], help="D1 violation counts")
    parser.add_argument("--name", default="wt6_antenna_bench")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--output", default=str(harness.ROOT / "bench" / "results.json"))
    args = parser.parse_args()

    from antenna_invariants.connection import url_for

    server = harness.server_entry()
    entry = harness.create(server, args.name, args.schema)
    url = url_for(entry)
    from django.db import connection
    from generate import generate

    results: dict = {"scale": vars(args) | {"output": None}}
    try:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            results["layout"] = generate(cursor, args.occurrences, args.violations, args.projects,
                                         interleaved=args.interleaved)
            cursor.execute("SELECT (SELECT count(*) FROM main_detection), (SELECT count(*) FROM main_classification), "
                           "(SELECT count(*) FROM main_identification), pg_database_size(current_database())")
            detections, classifications, identifications, size = cursor.fetchone()
        results["rows"] = {"detections": detections, "classifications": classifications,
                           "identifications": identifications, "database_mb": size // 2**20}
        results["generate_seconds"] = time.perf_counter() - started
        results["machine"] = machine()
        print(f"generated in {results['generate_seconds']:.0f} s: {results['rows']}", flush=True)
        results["catalogue"] = catalogue()
        print(f"catalogue: engine {results['catalogue']['engine_seconds']:.1f} s, "
              f"floor {results['catalogue']['floor_seconds']:.1f} s", flush=True)
        results["pytest"] = pytest_figures(url, entry)
        with tempfile.TemporaryDirectory() as journals:
            results["rss"] = rss_figures(url, args.rss)
            results["repair"] = harness.compare_repairs(args.repair_rows, args.loop_rows, Path(journals))
    finally:
        if not args.keep:
            harness.drop(server, args.name)
    Path(args.output).write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_table(results)
    return 0


def catalogue() -> dict:
    harness.floor_check()  # once untimed, so that both are measured on a warm cache
    engine, floor = harness.engine_check(), harness.floor_check()
    per_rule = {r: {"engine_s": engine[r][1], "floor_s": floor[r][1], "engine_violations": sum(engine[r][0].values()),
                    "floor_violations": floor[r][0]} for r in sorted(engine)}
    engine_seconds = sum(t for _, t in engine.values())
    floor_seconds = sum(t for _, t in floor.values())
    return {"engine_seconds": engine_seconds, "floor_seconds": floor_seconds, "ratio": engine_seconds / floor_seconds,
            "disagreements": [r for r, v in per_rule.items() if v["engine_violations"] != v["floor_violations"]],
            "rules": per_rule}


def pytest_figures(url: str, entry: dict) -> dict:
    full, full_rss, _ = pytest_run(url)
    parallel, _, _ = pytest_run(url, "-n", "auto")
    project = harness.project_ids()[len(harness.project_ids()) // 2]
    scoped, _, _ = pytest_run(url, "--project", str(project))
    return {"full_seconds": full, "full_peak_rss_mb": full_rss, "xdist_seconds": parallel,
            "xdist_speedup": full / parallel, "scoped_project": project, "scoped_seconds": scoped,
            "scoped_share": scoped / full}


def rss_figures(url: str, counts: list[int]) -> list[dict]:
    """Peak RSS of `pytest invariants -k D1` with exactly ``count`` D1 violations more than planted."""
    harness.execute(harness.SAVE_TRUTH)
    figures = []
    for count in counts:
        harness.partial_saves(count)
        seconds, rss, report = pytest_run(url, "-k", "D1")
        violations = sum(r["violations"] for r in report["results"] if r["rule"] == "D1")
        figures.append({"requested": count, "d1_violations": violations, "peak_rss_mb": rss, "seconds": seconds})
        print(f"rss: {violations:,} D1 violations -> {rss} MB", flush=True)
    harness.execute(harness.RESTORE)
    return figures


def print_table(r: dict):
    c, p, rep = r["catalogue"], r["pytest"], r["repair"]
    rows = [
        ("scale", (f"{r['layout']['n']:,} occurrences, {r['rows']['detections']:,} detections, "
                   f"{r['rows']['classifications']:,} classifications, {r['scale']['projects']} projects"), ""),
        ("1. catalogue vs floor", f"{c['engine_seconds']:.1f} s vs {c['floor_seconds']:.1f} s = {c['ratio']:.2f}x",
         "<= 1.25x"),
        ("2. D1 repair vs per-row", (f"{rep['engine_rows_per_s']:,.0f} vs {rep['loop_rows_per_s']:,.0f} rows/s = "
                                     f"{rep['speedup']:.0f}x; differences {rep['loop_vs_engine_differences']}"),
         ">= 50x, 0"),
        ("3. peak RSS", ", ".join(f"{f['d1_violations']:,}: {f['peak_rss_mb']} MB" for f in r["rss"]),
         "flat, < 200 MB"),
        ("4. -n auto", f"{p['full_seconds']:.1f} s -> {p['xdist_seconds']:.1f} s = {p['xdist_speedup']:.2f}x", ""),
        ("5. --project vs full", f"{p['scoped_seconds']:.1f} s vs {p['full_seconds']:.1f} s = {p['scoped_share']:.2f}",
         "<= 0.10"),
    ]
    for name, value, target in rows:
        print(f"{name:26} {value:80} {target}")


if __name__ == "__main__":
    sys.exit(main())
