"""Build the bench database, measure the five figures in one run, print a table, write bench/results.json.

    python bench/run.py --occurrences 1000000 --violations 1000          # the real run (see docs/benchmarks.md)
    python bench/run.py --occurrences 20000 --violations 5 --repair-rows 2000 --rss 10 1000   # a quick one
    python bench/run.py --occurrences 100000 --violations 100 --projects 1000 --many-projects  # figure 6 only

On DATABASE_URL's server (database ``--name``, dropped at the end unless --keep) or the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
import sqltime

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


FIGURES = ("1", "2", "3", "4", "5", "attribution")


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
    parser.add_argument("--existing", action="store_true",
                        help="measure database --name as it is (built by an earlier --keep run with the same scale "
                             "options; with --many-projects too): no build, and it is kept")
    parser.add_argument("--output", default=str(harness.ROOT / "bench" / "results.json"))
    parser.add_argument("--figures", nargs="*", choices=FIGURES, default=list(FIGURES),
                        help="measure only these figures (none: build the database only, with --keep)")
    parser.add_argument("--many-projects", action="store_true",
                        help="measure figure 6 only (many projects), into results.json's many_projects")
    parser.add_argument("--repeat", type=int, default=2, help="figure 6: how many times the full run is measured")
    parser.add_argument("--attribution-on", metavar="DB", help="only the attribution figure, on this existing database")
    parser.add_argument("--stress-jobs", type=int, default=0, help="attribution: jobs per project holding every row")
    args = parser.parse_args()
    if args.attribution_on:
        return attribution_only(args.attribution_on, args.stress_jobs, Path(args.output))
    if args.many_projects:
        return many_projects_main(args)

    from antenna_invariants.connection import url_for

    server = harness.server_entry()
    entry = harness.existing(server, args.name) if args.existing else harness.create(server, args.name, args.schema)
    url = url_for(entry)
    from django.db import connection
    from generate import generate, layout

    results: dict = {"scale": vars(args) | {"output": None}}
    try:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            if args.existing:
                results["layout"] = layout(args.occurrences, args.projects, args.interleaved)
            else:
                results["layout"] = generate(cursor, args.occurrences, args.violations, args.projects,
                                             interleaved=args.interleaved)
            cursor.execute("SELECT (SELECT count(*) FROM main_detection), (SELECT count(*) FROM main_classification), "
                           "(SELECT count(*) FROM main_identification), pg_database_size(current_database())")
            detections, classifications, identifications, size = cursor.fetchone()
        results["rows"] = {"detections": detections, "classifications": classifications,
                           "identifications": identifications, "database_mb": size // 2**20}
        results["generate_seconds"] = None if args.existing else time.perf_counter() - started
        results["machine"] = machine()
        print(f"generated in {results['generate_seconds'] or 0:.0f} s: {results['rows']}", flush=True)
        wanted = set(args.figures)
        if "1" in wanted:
            results["catalogue"] = catalogue()
            print(f"catalogue: engine {results['catalogue']['engine_seconds']:.1f} s, "
                  f"floor {results['catalogue']['floor_seconds']:.1f} s", flush=True)
        if wanted & {"4", "5", "attribution"}:
            results["pytest"] = pytest_figures(url, entry, parallel="4" in wanted, scoped="5" in wanted)
        if "attribution" in wanted:
            full = results["pytest"]["full_seconds"]
            results["attribution"] = {"stress_0": attribution_figure(full),
                                      "stress_5": attribution_figure(full, stress_jobs=5)}
        with tempfile.TemporaryDirectory() as journals:
            if "3" in wanted:
                results["rss"] = rss_figures(url, args.rss)
            if "2" in wanted:
                results["repair"] = harness.compare_repairs(args.repair_rows, args.loop_rows, Path(journals))
    finally:
        if not (args.keep or args.existing):
            harness.drop(server, args.name)
    if args.figures:  # a build-only run (--figures with none) leaves results.json as it is
        write_results(Path(args.output), results)
    print_table(results)
    return 0


SCALE = ("occurrences", "violations", "projects", "interleaved", "schema")  # what makes two runs' figures comparable


def write_results(path: Path, results: dict):
    """results.json: this run's figures over an earlier run's at the same scale (the figures it did not measure
    stay), and the figure-6 runs (``many_projects``, measured separately) at any scale."""
    previous = json.loads(path.read_text()) if path.exists() else {}
    same_scale = all(previous.get("scale", {}).get(k) == results.get("scale", {}).get(k) for k in SCALE)
    merged = (previous if same_scale else {}) | results
    if "many_projects" in previous:
        merged["many_projects"] = previous["many_projects"] | results.get("many_projects", {})
    path.write_text(json.dumps(merged, indent=2, default=str) + "\n")


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


def pytest_figures(url: str, entry: dict, parallel: bool = True, scoped: bool = True) -> dict:
    full, full_rss, _ = pytest_run(url)
    found: dict = {"full_seconds": full, "full_peak_rss_mb": full_rss}
    if parallel:
        seconds, _, _ = pytest_run(url, "-n", "auto")
        found |= {"xdist_seconds": seconds, "xdist_speedup": full / seconds}
    if scoped:
        project = harness.project_ids()[len(harness.project_ids()) // 2]
        seconds, _, _ = pytest_run(url, "--project", str(project))
        found |= {"scoped_project": project, "scoped_seconds": seconds, "scoped_share": seconds / full}
    return found


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


def attribution_figure(full_seconds: float, stress_jobs: int = 0) -> dict:
    """What attribution (README, "Blame") adds to a full run: for every rule with cases that fail the run
    (``blame.fails_the_run``, as a run without --strict: warned cases are not attributed), the cases' ids as the
    check finds them (at most blame.ID_CAP per case) attributed in one statement per rule; the seconds of those
    statements against ``full_seconds``, the full run's.  ``stress_jobs`` > 0 adds that many jobs per
    project whose windows, footprints (the project's collection) and pipeline hold every row, in a transaction
    rolled back at the end: every row then meets every job of its project (the worst case for the candidate
    join).  The checks are not timed: the ids come with the check in a real run."""
    from django.db import connection, transaction

    from antenna_invariants import blame
    from antenna_invariants.check import check, check_grouped

    rules, projects = harness.load_rules(), harness.project_ids()
    per_rule, total, rows, warned = {}, 0.0, 0, {}
    with transaction.atomic():
        if stress_jobs:
            with connection.cursor() as cursor:
                cursor.execute(STRESS_JOBS, {"per_project": stress_jobs})
        for rule_id, entry in sorted(rules.items()):
            if not isinstance(blame.trace_of(entry), blame.Trace):
                continue
            scopes = harness.scopes_of(entry, projects)
            outcomes = ({s.label: check(entry, s, blame.ID_CAP) for s in scopes} if entry.is_global
                        else check_grouped(entry, scopes, blame.ID_CAP))
            cases = {label: (o.sample, o.violations) for label, o in outcomes.items()
                     if o.violations and blame.fails_the_run(o.status)}
            skipped = sum(1 for o in outcomes.values() if o.violations and not blame.fails_the_run(o.status))
            if skipped:
                warned[rule_id] = skipped
            if not cases:
                continue
            started = time.perf_counter()
            attributed = blame.attribute_cases(entry, cases)
            seconds = time.perf_counter() - started
            total += seconds
            rows += sum(a.attributed for a in attributed.values())
            to_jobs = sum(o.rows for a in attributed.values() for o in a.origins if o.job)
            per_rule[rule_id] = {"seconds": round(seconds, 3), "cases": len(cases),
                                 "rows": sum(a.attributed for a in attributed.values()), "attributed_to_jobs": to_jobs}
        transaction.set_rollback(True)
    figure = {"seconds": total, "statements": len(per_rule), "rows": rows, "id_cap": blame.ID_CAP,
              "not_attributed_cases": warned, "full_run_seconds": full_seconds,
              "share_of_full_run": total / full_seconds if full_seconds else None,
              "stress_jobs_per_project": stress_jobs, "rules": per_rule}
    print(f"attribution: {total:.1f} s for {rows:,} rows in {len(per_rule)} statements = "
          f"{figure['share_of_full_run']:.1%} of the full run ({full_seconds:.1f} s)", flush=True)
    return figure


# Jobs of every project over its collection (made of every capture of the project, in the stress case) whose
# window holds every row's created_at and whose pipeline holds every algorithm: the attribution's worst case.
STRESS_JOBS = """
INSERT INTO main_sourceimagecollection_images (sourceimagecollection_id, sourceimage_id)
SELECT c.id, s.id FROM main_sourceimage s JOIN main_sourceimagecollection c ON c.project_id = s.project_id
 WHERE NOT EXISTS (SELECT FROM main_sourceimagecollection_images x
                    WHERE x.sourceimagecollection_id = c.id AND x.sourceimage_id = s.id);
INSERT INTO ml_pipeline (created_at, updated_at, name, slug, description, version, version_name, stages, default_config)
VALUES (now(), now(), 'bench stress', 'bench-stress', '', 1, '', '[]', '{}');
INSERT INTO ml_pipeline_algorithms (pipeline_id, algorithm_id)
SELECT (SELECT id FROM ml_pipeline WHERE slug = 'bench-stress'), a.id FROM ml_algorithm a;
INSERT INTO jobs_job (created_at, updated_at, name, queue, status, progress, logs, delay, shuffle, job_type_key,
    dispatch_mode, project_id, source_image_collection_id, pipeline_id, started_at, finished_at)
SELECT now() - interval '1 day', now() + interval '1 hour', 'stress ' || c.project_id || '/' || k, 'default',
       'SUCCESS', '{}', '{}', 0, true, 'ml', 'internal', c.project_id, c.id,
       (SELECT id FROM ml_pipeline WHERE slug = 'bench-stress'),
       (SELECT min(created_at) FROM main_occurrence) - interval '1 hour' + k * interval '1 second',
       (SELECT max(updated_at) FROM main_occurrence) + interval '1 hour'
  FROM main_sourceimagecollection c, generate_series(1, %(per_project)s) k;
ANALYZE jobs_job, main_sourceimagecollection_images, ml_pipeline_algorithms;
"""


def attribution_only(database: str, stress_jobs: int, output: Path) -> int:
    """``--attribution-on DB``: the attribution figure on an existing bench database (read-only unless
    ``stress_jobs``, whose rows are rolled back), merged into ``output`` under ``attribution``."""
    import django

    from antenna_invariants import connection as conn
    from antenna_invariants.connection import url_for, use_database

    if stress_jobs and not database.startswith("blame_"):
        raise SystemExit("--stress-jobs writes (rolled back) into the database: only on a blame_* database of your own")
    django.setup()
    entry = harness.server_entry() | {"NAME": database}
    use_database(entry if stress_jobs else conn.read_only_settings(entry))
    full, _, _ = pytest_run(url_for(entry))
    figure = attribution_figure(full, stress_jobs) | {"database": database}
    results = json.loads(output.read_text()) if output.exists() else {}
    results.setdefault("attribution", {})[f"stress_{stress_jobs}"] = figure
    output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


def print_table(r: dict):
    c, p, rep = r.get("catalogue"), r.get("pytest", {}), r.get("repair")
    rows = [
        ("scale", (f"{r['layout']['n']:,} occurrences, {r['rows']['detections']:,} detections, "
                   f"{r['rows']['classifications']:,} classifications, {r['scale']['projects']} projects"), ""),
    ]
    if c:
        rows.append(("1. catalogue vs floor",
                     f"{c['engine_seconds']:.1f} s vs {c['floor_seconds']:.1f} s = {c['ratio']:.2f}x", "<= 0.6x"))
    if rep:
        rows += [
            ("2. D1 repair vs per-row", (f"{rep['engine_rows_per_s']:,.0f} vs {rep['loop_rows_per_s']:,.0f} rows/s = "
                                         f"{rep['speedup']:.0f}x; differences {rep['loop_vs_engine_differences']}"),
             ">= 50x, 0"),
            ("2. D1 repair vs bare", (f"{rep['engine_seconds']:.1f} s vs {rep['bare_seconds']:.1f} s = "
                                      f"{rep['engine_vs_bare']:.2f}x; differences {rep['bare_vs_engine_differences']}"),
             "<= 1.3x, 0"),
        ]
    if r.get("rss"):
        rows.append(("3. peak RSS", ", ".join(f"{f['d1_violations']:,}: {f['peak_rss_mb']} MB" for f in r["rss"]),
                     "flat, < 200 MB"))
    if "xdist_seconds" in p:
        rows.append(("4. -n auto",
                     f"{p['full_seconds']:.1f} s -> {p['xdist_seconds']:.1f} s = {p['xdist_speedup']:.2f}x", ""))
    if "scoped_seconds" in p:
        rows.append(("5. --project vs full",
                     f"{p['scoped_seconds']:.1f} s vs {p['full_seconds']:.1f} s = {p['scoped_share']:.2f}", "<= 0.10"))
    for name, value, target in rows:
        print(f"{name:26} {value:80} {target}")



# --- figure 6: many projects (the cost of a case around the SQL) --------------------------------------------

FIGURE6_SCRIPT = RSS_SCRIPT + """import sqltime
print("SQL_STATEMENTS", sqltime.TOTAL["statements"], sqltime.TOTAL["seconds"])
"""
REPORTS = ("invariants.json", "junit.xml", "report.html", "summary.md")


def many_projects_main(args) -> int:
    """Figure 6 alone: build (or reuse) a database of ``--projects`` projects, measure, merge into results.json."""
    from django.db import connection

    from antenna_invariants.connection import url_for, use_database

    server = harness.server_entry()
    if args.existing:
        import django

        django.setup()
        entry = server | {"NAME": args.name}
        use_database(entry)
    else:
        from generate import generate

        entry = harness.create(server, args.name, args.schema)
        with connection.cursor() as cursor:
            generate(cursor, args.occurrences, args.violations, args.projects, interleaved=args.interleaved)
    try:
        figure = many_projects(url_for(entry), args.repeat) | {"machine": machine()}
    finally:
        if not (args.keep or args.existing):
            harness.drop(server, args.name)
    figure["scale"] = {k: getattr(args, k) for k in ("occurrences", "violations", "projects", "interleaved", "schema")}
    path = Path(args.output)
    previous = json.loads(path.read_text()) if path.exists() else {}  # the other figures stay as they were
    write_results(path, previous | {"many_projects": {str(figure["projects"]): figure}})
    print_many_projects(figure)
    return 0


def many_projects(url: str, repeat: int) -> dict:
    """Figure 6: the full default run (``pytest invariants``, reports written) ``repeat`` times, against the
    rules' own SQL; per-case overhead = (wall - SQL) / cases; peak RSS; report sizes; the HTML's load time in
    headless Chromium.  The rules' SQL is timed once untimed first (a warm cache for both)."""
    rules_sql()
    runs = [full_default_run(url) for _ in range(repeat)]
    per_case = full_default_run(url, "--tests-per", "case")  # beside it: one pytest test per rule x project
    sql, statements = rules_sql()
    wall = sorted(r["wall_seconds"] for r in runs)[len(runs) // 2]  # the median (the lower one of two)
    best = min(runs, key=lambda r: r["wall_seconds"])
    cases = best["cases"]
    cpu = min(r["cpu_seconds"] for r in runs)
    return {
        "projects": len(harness.project_ids()), "rules": len(harness.load_rules()), "cases": cases,
        "failing": best["failing"], "wall_seconds": wall, "runs": runs, "sql_seconds": sql,
        "sql_statements": statements, "per_case_ms": 1000 * (wall - sql) / cases, "cpu_seconds": cpu,
        "cpu_per_case_ms": 1000 * cpu / cases, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "bytes": best["bytes"], "html_load_seconds": best["html_load_seconds"], "load_average": os.getloadavg(),
        "tests_per_case": per_case | {"per_case_ms": 1000 * (per_case["wall_seconds"] - sql) / cases},
    }


def full_default_run(url: str, *options: str) -> dict:
    """``pytest invariants`` as users run it (default options, every report written, into a scratch directory;
    ``options`` added), with bench/sqltime.py timing the statements it sends; peak RSS is the process's own VmHWM."""
    with tempfile.TemporaryDirectory() as reports:
        command = [sys.executable, "-c", FIGURE6_SCRIPT, "invariants", "-p", "sqltime", "--reports", reports,
                   "-o", f"cache_dir={reports}/.cache", *options]
        env = os.environ | {"DATABASE_URL": url, "PYTHONPATH": str(harness.ROOT / "bench")}
        load = os.getloadavg()[0]
        before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        done = subprocess.run(command, check=False, cwd=harness.ROOT, env=env, capture_output=True, text=True)
        wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime  # the run's own CPU: less noisy
        if done.returncode not in (0, 1):
            raise RuntimeError(f"pytest exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        lines = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()
                 if line.startswith(("PEAK_RSS_KB", "SQL_STATEMENTS"))}
        document = json.loads((Path(reports) / "invariants.json").read_text())
        sizes = {name: (Path(reports) / name).stat().st_size for name in REPORTS}
        ours = sum(len(" ".join([k, *v]).encode()) + 1 for k, v in lines.items())  # the PEAK_RSS_KB ... lines
        sizes["terminal"] = len(done.stdout.encode()) - ours
        html_load = html_load_seconds(Path(reports) / "report.html")
    run = {"wall_seconds": wall, "cpu_seconds": cpu, "peak_rss_mb": int(lines["PEAK_RSS_KB"][0]) // 1024,
           "run_statements": int(lines["SQL_STATEMENTS"][0]), "run_sql_seconds": float(lines["SQL_STATEMENTS"][1]),
           "cases": document["totals"]["cases"], "failing": document["totals"]["failing"], "bytes": sizes,
           "html_load_seconds": html_load, "load_before": load}
    print(f"full run {' '.join(options)}: {wall:.1f} s wall, {cpu:.1f} s CPU, {run['run_sql_seconds']:.1f} s in "
          f"{run['run_statements']} statements, {run['cases']} cases ({run['failing']} failing), "
          f"{run['peak_rss_mb']} MB, html {html_load} s, load {load:.1f}", flush=True)
    return run


def html_load_seconds(path: Path, times: int = 3) -> float | None:
    """The report's load time in headless Chromium (tests/browser.py: until pytest-html has drawn its table),
    the best of ``times``; None without Chromium."""
    sys.path.insert(0, str(harness.ROOT / "tests"))
    from browser import Page

    seconds = []
    for _ in range(times):
        try:
            page = Page(path)
        except BaseException as exc:  # pytest.skip's exception: no chromium here
            if type(exc).__name__ != "Skipped":
                raise
            return None
        seconds.append(page.load_seconds)
        page.close()
    return round(min(seconds), 2)


def rules_sql() -> tuple[float, int]:
    """The rules' own SQL in a full run: every statement the engine sends to check every rule x scope as the
    plugin does (one grouped statement per rule, denominators once per table), timed by bench/sqltime.py's
    wrapper: (seconds, statements)."""
    from django.db import connection

    before = dict(sqltime.TOTAL)
    with connection.execute_wrapper(sqltime.timed):
        harness.engine_check()
    return sqltime.TOTAL["seconds"] - before["seconds"], int(sqltime.TOTAL["statements"] - before["statements"])


def print_many_projects(f: dict):
    b = f["bytes"]
    rows = [
        ("scale", f"{f['projects']} projects, {f['rules']} rules, {f['cases']:,} cases, {f['failing']:,} failing", ""),
        ("6. full default run", f"{f['wall_seconds']:.1f} s wall, rules' SQL {f['sql_seconds']:.1f} s",
         "<= SQL + 60 s"),
        ("   per-case overhead", f"{f['per_case_ms']:.2f} ms ({f['cpu_per_case_ms']:.2f} ms of the run's CPU per case)",
         "<= 2 ms"),
        ("   peak RSS", f"{f['peak_rss_mb']} MB", "< 200 MB"),
        ("   reports", ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in b.items()), "by failing cases"),
        ("   report.html opens in", f"{f['html_load_seconds']} s", "< 3 s"),
    ]
    c = f.get("tests_per_case")
    if c:
        rows.append(("   --tests-per case", f"{c['wall_seconds']:.1f} s wall, {c['per_case_ms']:.2f} ms per case, "
                     f"{c['peak_rss_mb']} MB, html {c['html_load_seconds']} s", "(beside it)"))
    for name, value, target in rows:
        print(f"{name:26} {value:80} {target}")


if __name__ == "__main__":
    sys.exit(main())
