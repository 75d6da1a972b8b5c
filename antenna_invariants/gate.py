"""The post-job gate: ``antenna-invariants gate`` checks the footprint of every job that finished since the
previous gate run, job by job, with the job-scoped rules only (README, "The post-job gate").

    antenna-invariants gate                    # every 15 minutes from cron, or from a Celery beat task
    antenna-invariants gate --max-jobs 20 --statement-timeout 30s --reports /var/lib/antenna-invariants

Where it got to is kept in ``REPORTS/gate-state.json`` (written atomically): the newest finish time it checked
(the watermark) and the jobs it checked within ``--overlap`` of it, each with the finish time it had.  A run
selects the jobs in a final state (SUCCESS, FAILURE, REVOKED) that finished after the watermark minus the
overlap and are not among those already checked, oldest finish first (then id), at most ``--max-jobs``.  So:

- every finished job is checked once, even when runs are skipped: the next run starts where the last stopped;
- a job that finishes out of id order, or whose finish commits minutes after its ``finished_at`` (after a run
  had already moved the watermark past it), is still picked up while it is within the overlap (default 1h);
- ``--max-jobs`` leaves the rest to the next run, in order: the watermark stops at the last job checked;
- a job finishing again (a retry writes a new ``finished_at``) is checked again.

A final job without ``finished_at`` (rule J2) counts as finished at its last ``updated_at``.  The first run, with
no state, takes the jobs that finished in the last ``--since`` (default 1h).  Each job's footprint is ``--job``'s
(its project, its input captures, its pipeline's algorithms), and only its rows created or written since the job
started count: what the job wrote, not the older debt of the same captures (the nightly run's business).
Read-only: the session is ``default_transaction_read_only``; only the state file and ``REPORTS/gate.json`` are
written.

Exit codes: 0 every checked footprint holds (or no job finished, or another gate run holds the lock); 1
violations in at least one job's footprint (or a rule could not run); 2 interrupted; 3 internal error (a bug:
the traceback, then one line ``ERROR: internal error (exit 3): …``; the state keeps the jobs checked before it,
not the one it was on); 4 usage or configuration error, one line ``ERROR: …``, state left as it was.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import traceback
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import django
from django.conf import settings
from django.db import DatabaseError, connection, connections

from antenna_invariants import connection as conn
from antenna_invariants import schema
from antenna_invariants.blame import Trace, trace_of
from antenna_invariants.check import check, timed_out
from antenna_invariants.connection import mask
from antenna_invariants.errors import ConfigError
from antenna_invariants.layout import REPORTS_DIR, load_rules
from antenna_invariants.rules import RULES, Rule
from antenna_invariants.scope import JobFootprint, Scope, parse_age, parse_since, parse_timeout

if TYPE_CHECKING:
    from collections.abc import Callable

STATE_VERSION = 1
FINAL = ("SUCCESS", "FAILURE", "REVOKED")  # a job's final states (fact sheet §1.15)
STATE_FILE = "gate-state.json"
REPORT_FILE = "gate.json"
START_SLACK = timedelta(minutes=1)


def job_scoped(entry: Rule) -> bool:
    """A rule on rows a job writes: the job row itself, or a table whose rows the attribution traces to jobs
    (``blame.TRACES``: occurrences, detections, classifications, captures, events, deployments, collections).
    Not identifications (people make them), taxa, job-log retention or Antenna's watchdogs."""
    return not entry.is_global and (entry.table == "jobs" or isinstance(trace_of(entry), Trace))


@dataclass
class State:
    """Where the gate got to: the watermark and the jobs checked near it ({id: finish time it had})."""

    watermark: datetime | None = None
    checked: dict[int, str] = field(default_factory=dict)
    runs: int = 0

    @classmethod
    def load(cls, path: Path) -> State:
        if not path.exists():
            return cls()
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if document.get("schema_version") != STATE_VERSION:
                raise ValueError(f"schema_version {document.get('schema_version')!r}")
            watermark = document["watermark"]
            return cls(datetime.fromisoformat(watermark) if watermark else None,
                       {int(k): str(v) for k, v in document["checked"].items()}, int(document.get("runs", 0)))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path}: not a gate state file ({exc}); move it away to start afresh") from None

    def save(self, path: Path) -> None:
        watermark = self.watermark.isoformat() if self.watermark else None
        document = {"schema_version": STATE_VERSION, "watermark": watermark,
                    "checked": {str(k): v for k, v in sorted(self.checked.items())}, "runs": self.runs}
        _write_atomically(path, document)


def _write_atomically(path: Path, document: dict[str, Any]) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(document, indent=1, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError:
        temp.unlink(missing_ok=True)
        raise


@dataclass
class JobCheck:
    job: int
    type: str
    status: str
    finished: str
    footprint: str
    results: list[dict[str, Any]] = field(default_factory=list)  # the non-passing cases' outcomes

    @property
    def failing(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["status"] in ("failed", "error")]

    def line(self) -> str:
        head = f"job {self.job} ({self.type}, {self.status}, finished {self.finished[:16]})"
        if not self.results:
            return f"{head}: its footprint holds"
        cases = ", ".join(_case(r) for r in self.results)
        verdict = "FAILED" if self.failing else "warned"
        return f"{head}: {verdict} {cases}"


def _case(r: dict[str, Any]) -> str:
    """``D1 38 (ids 1, 2, 3, 4, 5, …)``; ``N8 2 (ids 4, 5) warned``; ``C5 could not run``."""
    text = f"{r['rule']} {'could not run' if r['status'] == 'error' else r['violations']}"
    if r["sample"]:
        text += f" (ids {', '.join(map(str, r['sample'][:5]))}{', …' if r['violations'] > 5 else ''})"
    return text + ("" if r["status"] in ("failed", "error") else f" {r['status']}")


def finished_jobs(state: State, since: datetime, overlap: timedelta) -> list[tuple[int, datetime]]:
    """(id, finish time) of the jobs to check, oldest finish first: after the watermark minus the overlap (or
    ``since`` on a first run), and not checked with this finish time before."""
    start = state.watermark - overlap if state.watermark else since
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT id, coalesce(finished_at, updated_at) AS finished FROM jobs_job
                WHERE status = ANY(%s) AND coalesce(finished_at, updated_at) >= %s
                ORDER BY finished, id""",
            [list(FINAL), start],
        )
        rows = cursor.fetchall()
    return [(pk, finished) for pk, finished in rows if state.checked.get(pk) != finished.isoformat()]


def check_job(job_id: int, rules: list[Rule], sample_size: int) -> JobCheck:
    """The job-scoped rules on the job's footprint (rows changed since it started, for incremental rules)."""
    from antenna_invariants.mirror.models import Job

    job = Job.objects.get(pk=job_id)
    footprint = JobFootprint.infer(job_id)
    started = job.started_at or job.scheduled_at or job.created_at
    scope = Scope(project=footprint.project_id, job=footprint, since=started - START_SLACK)
    finished = (job.finished_at or job.updated_at).isoformat(sep=" ")
    result = JobCheck(job.pk, job.job_type_key, job.status, finished, footprint.describe())
    bare = footprint.image_source is None and footprint.algorithm_ids is None
    for entry in rules:
        if bare and "jobs" not in entry.model.scope_paths:
            continue  # no input captures and no pipeline: nothing narrows its rows, only the job row is its own
        try:
            outcome = check(since_the_job(entry), scope, sample_size).as_dict()
        except DatabaseError as exc:
            reason = "timed out (--statement-timeout)" if timed_out(exc) else str(exc).strip().splitlines()[0]
            outcome = {"rule": entry.id, "status": "error", "violations": 0, "sample": [], "message": reason}
        if outcome["status"] != "passed" or outcome["violations"]:
            result.results.append(outcome)
    return result


def since_the_job(entry: Rule) -> Rule:
    """The rule limited to rows created or written since the job started, as ``--since`` limits an incremental
    rule (plus the related rows it declares): what the job wrote, not the older debt of the same captures,
    which the nightly run reports.  A table without timestamps (a collection's membership) runs in full."""
    if entry.incremental is not None or "created_at" not in {f.name for f in entry.model._meta.fields}:
        return entry
    return replace(entry, incremental=())


def run(reports: Path, since: datetime | None = None, max_jobs: int = 50, overlap: timedelta = timedelta(hours=1),
        sample_size: int = 20, out: Callable[[str], object] = print) -> int:
    """One gate run on Django's configured connection: check the jobs, advance the state, write gate.json.
    Returns the exit code."""

    load_rules()
    rules = [entry for entry in RULES.values() if job_scoped(entry)]
    path = reports / STATE_FILE
    with _locked(reports) as locked:
        if not locked:
            out(f"gate: another gate run holds {reports / '.gate.lock'}; nothing done (the next run catches up)")
            return 0
        state = State.load(path)
        if since is None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT now()::timestamp - interval '1 hour'")
                since = cursor.fetchone()[0]
        pending = finished_jobs(state, since, overlap)
        todo, left = pending[:max_jobs], pending[max_jobs:]
        start = (state.watermark - overlap) if state.watermark else since
        out(f"gate: {len(pending)} job(s) finished since {start.isoformat(sep=' ', timespec='minutes')} "
            "and not checked yet"
            + (f"; checking {len(todo)}, {len(left)} left for the next run (--max-jobs {max_jobs})" if left else "")
            + f"; {len(rules)} job-scoped rules")
        checks = []
        for pk, finished in todo:
            outcome = check_job(pk, rules, sample_size)
            checks.append(outcome)
            out(outcome.line())
            state.checked[pk] = finished.isoformat()
            state.watermark = max(filter(None, [state.watermark, finished]))
            state.save(path)  # after each job: a killed run re-checks at most the job it was on
        if state.watermark is not None:
            horizon = (state.watermark - overlap).isoformat()
            state.checked = {k: v for k, v in state.checked.items() if v >= horizon}
        state.runs += 1
        state.save(path)
        failing = [c for c in checks if c.failing]
        _write_atomically(reports / REPORT_FILE, {
            "schema_version": STATE_VERSION, "checked": len(checks), "left": len(left),
            "jobs": [c.__dict__ for c in checks],
        })
    if failing:
        out(f"GATE FAILED: violations in the footprint of {len(failing)} of {len(checks)} job(s): "
            + ", ".join(str(c.job) for c in failing) + f" (details: {reports / REPORT_FILE})")
        return 1
    out(f"GATE PASSED: {len(checks)} job(s) checked, every footprint holds")
    return 0


class _locked:
    """An exclusive, non-blocking lock on ``REPORTS/.gate.lock``: two overlapping gate runs never check the
    same jobs or write the state at once; the second one does nothing."""

    def __init__(self, reports: Path):
        self.path = reports / ".gate.lock"

    def __enter__(self) -> bool:
        self.handle = open(self.path, "a")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def __exit__(self, *exc: object) -> None:
        self.handle.close()  # releases the lock


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # noqa: ANN401 (argparse's signature)
        print(f"ERROR: {message} (usage: antenna-invariants gate [options])", file=sys.stderr)
        sys.exit(4)


def main(argv: list[str] | None = None) -> int:

    parser = Parser(prog="antenna-invariants gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", default=str(REPORTS_DIR), help="where gate-state.json and gate.json live")
    parser.add_argument("--max-jobs", type=int, default=50, help="check at most N jobs; the rest wait for the next run")
    parser.add_argument("--statement-timeout", default="1min", help="cancel any query running longer (default 1min)")
    parser.add_argument("--since", default="1h",
                        help="first run only (no state): jobs finished in this last age or since this date")
    parser.add_argument("--overlap", default="1h",
                        help="how far back a late-committed finish is still picked up (default 1h)")
    parser.add_argument("--sample-size", type=int, default=20, help="ids shown per failing rule")
    args = parser.parse_args(argv)
    os.environ["DJANGO_SETTINGS_MODULE"] = "antenna_invariants.settings"
    try:
        if args.max_jobs < 1:
            raise ConfigError("--max-jobs must be 1 or more")
        overlap = parse_age(args.overlap, "--overlap")
        timeout = parse_timeout(args.statement_timeout)
        reports = Path(args.reports)
        _writable(reports)
        url = os.environ.get("DATABASE_URL")
        if not url:
            raise ConfigError("the gate needs DATABASE_URL (the database whose jobs it checks)")
        entry = conn.read_only_settings(conn.with_settings(conn.django_database(url), statement_timeout=timeout))
        django.setup()
        _use(entry)
        return _connected(reports, args, overlap)
    except ConfigError as exc:
        print(f"ERROR: {conn.mask(str(exc))}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        print("gate: interrupted; the state holds every job checked so far", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: exit 3, never the 1 that means violations
        print(conn.mask(traceback.format_exc()), file=sys.stderr)
        print(internal_error(exc), file=sys.stderr)
        return 3


def internal_error(exc: BaseException) -> str:
    """The one line that ends an internal error's output (after its traceback), for the cron log's last line."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return (f"ERROR: internal error (exit 3): {type(exc).__name__}: {conn.mask(first)}; the state keeps every job "
            "checked before it, and the next run starts at the job it was on")


def _connected(reports: Path, args: argparse.Namespace, overlap: timedelta) -> int:
    try:
        schema.guard()
        since = parse_since(args.since)
        return run(reports, since, args.max_jobs, overlap, args.sample_size)
    except DatabaseError as exc:
        raise ConfigError(f"database: {mask(str(exc).strip().splitlines()[0])}") from None


def _writable(reports: Path) -> None:
    try:
        reports.mkdir(parents=True, exist_ok=True)
        probe = reports / f".gate.{os.getpid()}.probe"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"--reports {reports}: cannot write there ({exc.strerror or exc})") from None


def _use(entry: dict[str, Any]) -> None:
    connections.close_all()
    settings.DATABASES["default"].update({k: v for k, v in entry.items() if k != "TEST"})
    connections["default"].settings_dict.update({k: v for k, v in entry.items() if k != "TEST"})
