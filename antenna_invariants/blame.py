"""Attribution: which job most likely wrote a failing case's rows, and when they appeared (README, "Blame").

No row stores the job that wrote it (fact sheet §6), so the origin is inferred from what the database does keep:

- the job's **time window**, ``started_at`` … ``finished_at`` (``updated_at`` for a job that never finished),
  against the rows' own ``created_at`` and ``updated_at``: a job whose window holds neither cannot have written
  the row, so time is required of every candidate;
- its **input footprint** (its collection, else its single capture, else its deployment: ``--job``'s footprint)
  against the rows' captures;
- its **pipeline's algorithms** against the algorithms of the rows' detections and classifications;
- its **log lines** (``jobs_joblog``) that name one of the rows' captures (``Image 12``, ``SourceImage #12``).

Each row goes to its best candidate in the row's project; the rows are then grouped by that job and
confidence.  A job whose window spans more than ``MAX_WINDOW`` (contradictory times, a job left running) is no
candidate.  Confidence:
``high`` when the window, the footprint and the algorithms (or a log line) agree, ``medium`` when the window
and one more piece agree, ``low`` when only the window does; a row that several jobs fit equally well is
one level lower and says so.  It is never certain, and the reports say "most likely".

How each table's rows are traced is declared in ``TRACES`` below (the path to their captures and algorithms);
a table whose rows carry no time or job trace maps to the reason it is "not attributable".
All of it is one read-only statement per rule for the cases that fail the run (``fails_the_run``), on the ids
the check found (at most ``ID_CAP`` per case); a warned or baselined case is reported as not attributed, with
the reason (``not_attributed``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connection

from antenna_invariants.rules import Rule, Status
from antenna_invariants.sql import AnyOf  # noqa: F401  (registers ``pk__any=ids``)


@dataclass(frozen=True)
class Trace:
    """How a table's rows lead to the jobs that may have written them: the lookup path to their captures
    (``None``: none, only time and algorithms count) and the paths to the algorithms that produced them.
    Time is always the row's own ``created_at`` and ``updated_at``."""

    captures: str | None
    algorithms: tuple[str, ...] = ()


# table -> its trace, or why its rows cannot be attributed ("not attributable: <reason>")
TRACES: dict[str, Trace | str] = {
    "occurrences": Trace("detections__source_image",
                         ("detections__detection_algorithm", "detections__classifications__algorithm")),
    "detections": Trace("source_image", ("detection_algorithm", "classifications__algorithm")),
    "classifications": Trace("detection__source_image", ("algorithm",)),
    "captures": Trace("pk"),  # data_storage_sync writes them
    "events": Trace("captures"),  # regroup_events
    "deployments": Trace("captures"),  # sync and regroup refresh their counts
    "collections": Trace("images"),  # populate_captures_collection
    "collection_images": "collection membership rows carry no timestamp",
    "identifications": "identifications are made by people in Antenna's UI, not by jobs",
    "jobs": "the row is a job: its id is the origin",
    "job_logs": "a job's own log lines: the job is on the row",
    "taxa": "taxa are imported by commands, not written by a job",
    "algorithms": "algorithms are registered by processing services, not written inside a job's footprint",
    "taxa_lists": "taxa lists are edited by people",
    "periodic_tasks": "celery beat's own rows carry no timestamp",
}

ID_CAP = 1_000  # violating ids attributed per case; beyond it the report says how many were
SAMPLE = 5  # ids listed per origin
WINDOW_SLACK = timedelta(minutes=1)  # a job writes its last rows just before it records finished_at
# A job whose window spans more than this (times that contradict each other, J5, or a job left running for
# weeks) says nothing about when it wrote: it is no candidate.
MAX_WINDOW = timedelta(days=7)
DEPLOY_GAP = timedelta(minutes=10)  # migrations applied within this of each other are one deploy
# A log line names a capture as Antenna's loggers write them: "Image 12", "Image #12", "SourceImage #12",
# "Source image 12", "capture 12" (ami/ml/models/pipeline.py, ami/ml/orchestration/jobs.py, ami/ml/tasks.py).
CAPTURE_IN_LOG = r"(?:source ?image|image|capture)\s*#?(\d+)"
CONFIDENCE = {3: "high", 2: "medium", 1: "low"}


@dataclass
class Origin:
    """The rows of a case that most likely came from one job (``job`` None: from no job we can see)."""

    job: int | None
    rows: int
    sample: list[int]
    confidence: str  # high | medium | low | none
    reason: str
    type: str | None = None
    status: str | None = None
    pipeline: str | None = None  # its name, set by processing services (job names, typed by people, stay out)
    project: int | None = None
    window: list[str | None] = field(default_factory=list)  # [start, end] as ISO text
    window_end: str | None = None  # which column ended the window: finished_at, or updated_at (never finished)
    first_row: str | None = None  # the rows' own oldest created_at and newest updated_at
    last_row: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Attribution:
    """A case's origins and when its rows appeared; ``reason`` alone when the rule is not attributable."""

    attributable: bool
    reason: str = ""
    origins: list[Origin] = field(default_factory=list)
    attributed: int = 0  # the rows looked at (at most ID_CAP); the case's violations may be more
    oldest: dict[str, Any] | None = None  # {"id", "created_at"} of the oldest violating row
    newest: dict[str, Any] | None = None  # {"id", "updated_at"} of the most recently written one
    deploy: dict[str, Any] | None = None  # the last migrations applied before the oldest row

    def as_dict(self) -> dict[str, Any]:
        return {
            "attributable": self.attributable, "reason": self.reason, "attributed": self.attributed,
            "oldest": self.oldest, "newest": self.newest, "deploy": self.deploy,
            "origins": [o.as_dict() for o in self.origins],
        }


def trace_of(entry: Rule) -> Trace | str:
    """How the rule's rows are traced: its table's entry in ``TRACES``."""
    return TRACES.get(entry.table, f"no trace declared for {entry.table}")


def attributable(entry: Rule) -> bool:
    return isinstance(trace_of(entry), Trace)


def fails_the_run(status: Status, strict: bool = False) -> bool:
    """Whether a case's status fails the run, and so is attributed: ``failed``, or ``warned`` under --strict.
    A warned case (without --strict) or a baselined one does not fail it: attributing it would cost the run
    for rows nobody is asked to act on now (docs/benchmarks.md, "Attribution")."""
    return status == Status.FAILED or (strict and status == Status.WARNED)


NOT_ATTRIBUTED = {
    "warned": "not attributed (warn): a warned case does not fail the run; --strict attributes it",
    "baselined": "not attributed (baselined): the baseline knows its rows, so it does not fail the run",
}


def not_attributed(entry: Rule, status: Status) -> Attribution:
    """A case shown but not attributed (warned, baselined): says so and why; a rule whose rows cannot be traced
    keeps its own reason."""
    trace = trace_of(entry)
    if isinstance(trace, str):
        return Attribution(False, f"not attributable: {trace}")
    return Attribution(True, NOT_ATTRIBUTED.get(str(status), f"not attributed ({status})"))


def attribute(entry: Rule, ids: list[int], violations: int | None = None) -> Attribution:
    """The origins of one case's violating rows ``ids`` of rule ``entry`` (the first ``ID_CAP`` are looked at)."""
    return attribute_cases(entry, {"case": (ids, violations)}, lambda project: "case")["case"]


def attribute_cases(entry: Rule, cases: dict[str, tuple[list[int], int | None]],
                    label: Callable[[int | None], str] | None = None) -> dict[str, Attribution]:
    """The origins of several cases of one rule, ``{label: (ids, violations)}``, in one statement (the rows of a
    project only ever meet that project's jobs, so the cases do not mix); ``label(project_id)`` names the case
    of a row's project (default ``project5`` / ``noproject``)."""
    name = label or (lambda project: "noproject" if project is None else f"project{project}")
    trace = trace_of(entry)
    if isinstance(trace, str):
        return {case: Attribution(False, f"not attributable: {trace}") for case in cases}
    results: dict[str, Attribution] = {}
    ids: list[int] = []
    for case, (case_ids, violations) in cases.items():
        case_ids = sorted(case_ids)[:ID_CAP]
        ids += case_ids
        results[case] = Attribution(True, attributed=len(case_ids))
        if violations is not None and violations > len(case_ids):
            results[case].reason = f"the first {len(case_ids)} of {violations} violating rows attributed"
    if not ids:
        return results
    sql, params = _statement(entry.model, trace, ids)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        columns = [c.name for c in cursor.description]
        groups = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    migrations = _migrations()
    for case, result in results.items():
        mine = [g for g in groups if name(g["row_project"]) == case]
        if not mine:
            continue
        result.origins = sorted((_origin(g) for g in mine), key=lambda o: (o.job is None, -o.rows, o.job or 0))
        oldest = min(mine, key=lambda g: (g["first_row"], g["first_id"]))
        newest = max(mine, key=lambda g: (g["last_row"], g["last_id"]))
        result.oldest = {"id": oldest["first_id"], "created_at": _iso(oldest["first_row"])}
        result.newest = {"id": newest["last_id"], "updated_at": _iso(newest["last_row"])}
        result.deploy = deploy_before(oldest["first_row"], migrations)
    return results


def _part(queryset: Any, *columns: str) -> tuple[str, list[Any]]:
    try:
        return queryset.order_by().values_list(*columns).query.sql_with_params()
    except EmptyResultSet:
        return _none(len(columns)), []


def _none(columns: int) -> str:
    return f"SELECT {', '.join(['NULL::bigint'] * columns)} WHERE false"


def _statement(model: Any, trace: Trace, ids: list[int]) -> tuple[str, list[Any]]:
    """One statement: the rows; the jobs that may have written them (same project, a window that holds the
    row's time); only for the rows some window reaches, their captures (with the captures' deployments) and
    algorithms; the (row, job) pairs the evidence joins to (footprint, algorithms, log lines); each row's best
    pair, or, for a row no evidence points from, the tightest window that holds it; grouped by job with the
    job's description.  A row no job's window reaches costs its own index lookup only (``reached``), and no
    (row, job) pair is built for time alone: a project whose jobs' windows overlap would make thousands."""
    rows = model.objects.filter(pk__any=ids)
    project = model.scope_paths["project"]
    sql, row_params = _part(rows, "pk", "created_at", "updated_at", project)
    params = list(row_params)
    text = [f"WITH v_rows (pk, created_at, updated_at, project_id) AS MATERIALIZED ({sql}),", CANDIDATES]
    params += [WINDOW_SLACK, WINDOW_SLACK, MAX_WINDOW, WINDOW_SLACK, WINDOW_SLACK]
    if trace.captures:
        path = trace.captures
        deployment = "deployment" if path == "pk" else f"{path}__deployment"
        caps = _part(rows.filter(**{f"{path}__isnull": False}), "pk", path, deployment)
    else:
        caps = (_none(3), [])
    algorithm_parts = [_part(rows.filter(**{f"{p}__isnull": False}), "pk", p) for p in trace.algorithms]
    algs = (" UNION ".join(f"({s})" for s, _ in algorithm_parts) or _none(2),
            [p for _, ps in algorithm_parts for p in ps])
    for name, columns, (sql, part_params) in (("caps", "(pk, capture, deployment)", caps),
                                              ("algs", "(pk, algorithm)", algs)):
        text.append(f",\nv_{name} {columns} AS MATERIALIZED (\n    SELECT * FROM ({sql}) AS x {columns}"
                    "\n     WHERE x.pk IN (SELECT pk FROM reached))")
        params += list(part_params)
    params += [CAPTURE_IN_LOG, SAMPLE]
    return ("".join(text) + ATTRIBUTION).replace("{FITS}", FITS), params


# The candidates.  A job's window starts at started_at (else when it was scheduled or created) and ends at
# finished_at, or at its last updated_at when it never finished (or recorded an end before its start, J5);
# f0 .. f1 is the window widened by WINDOW_SLACK, which a row's created_at or updated_at must fall in (FITS).
# Its input footprint is --job's: collection, else single capture, else deployment (the one that counts).
CANDIDATES = """
windows AS (
    SELECT j.id, j.project_id, j.pipeline_id, j.source_image_collection_id AS collection_id,
           CASE WHEN j.source_image_collection_id IS NULL THEN j.source_image_single_id END AS single_id,
           CASE WHEN j.source_image_collection_id IS NULL AND j.source_image_single_id IS NULL
                THEN j.deployment_id END AS deployment_id,
           s.w0, CASE WHEN j.finished_at >= s.w0 THEN j.finished_at ELSE j.updated_at END AS w1,
           j.finished_at >= s.w0 AS finished, greatest(j.finished_at, j.updated_at) AS last_seen
      FROM jobs_job j, LATERAL (SELECT coalesce(j.started_at, j.scheduled_at, j.created_at) AS w0) s
     WHERE j.project_id IN (SELECT DISTINCT project_id FROM v_rows WHERE project_id IS NOT NULL)
),
jobs AS MATERIALIZED (
    SELECT w.*, w.w1 - w.w0 AS span, w.w0 - %s AS f0, w.w1 + %s AS f1,
           row_number() OVER (ORDER BY w.w1 - w.w0, w.id DESC) AS tightness  -- the tightest window first
      FROM windows w
     WHERE w.w1 - w.w0 <= %s
       AND w.w0 <= (SELECT max(greatest(created_at, updated_at)) FROM v_rows) + %s
       AND w.last_seen >= (SELECT min(least(created_at, updated_at)) FROM v_rows) - %s
),
reached AS MATERIALIZED (
    SELECT r.pk FROM v_rows r WHERE EXISTS (SELECT FROM jobs j WHERE j.project_id = r.project_id AND {FITS})
)"""


# A row's time falls in a job's widened window (``r`` a row of v_rows, ``j`` a job of ``jobs``).
FITS = "(r.created_at BETWEEN j.f0 AND j.f1 OR r.updated_at BETWEEN j.f0 AND j.f1)"

# The evidence, and the best job per row.  Each piece of evidence is an equality join from the rows' keys
# (captures, their collections and deployment, algorithms, captures named in log lines) to the jobs' keys,
# in the row's project and fitting its time: only the (row, job) pairs some evidence agrees on are built.
# A row with none goes to the tightest window that holds it, with low confidence (contested when another
# window holds it too): one aggregate over its jobs (the least ``tightness``), no (row, job) pair kept
# and sorted for time alone.
ATTRIBUTION = """,
v_deps AS MATERIALIZED (SELECT DISTINCT pk, deployment FROM v_caps WHERE deployment IS NOT NULL),
v_cols AS MATERIALIZED (  -- a row of many captures (an event, a deployment) meets each collection once
    SELECT DISTINCT c.pk, ci.sourceimagecollection_id AS collection
      FROM v_caps c JOIN main_sourceimagecollection_images ci ON ci.sourceimage_id = c.capture
     WHERE ci.sourceimagecollection_id IN (SELECT collection_id FROM jobs)
),
named AS MATERIALIZED (
    SELECT DISTINCT l.job_id AS job, m[1]::bigint AS capture
      FROM jobs_joblog l, regexp_matches(l.message, %s, 'gi') AS m
     WHERE l.job_id IN (SELECT id FROM jobs) AND length(m[1]) < 19
),
evidence (pk, job, kind) AS (
    SELECT c.pk, j.id, 'footprint' FROM v_cols c JOIN v_rows r ON r.pk = c.pk
      JOIN jobs j ON j.collection_id = c.collection AND j.project_id = r.project_id AND {FITS}
    UNION ALL
    SELECT c.pk, j.id, 'footprint' FROM v_caps c JOIN v_rows r ON r.pk = c.pk
      JOIN jobs j ON j.single_id = c.capture AND j.project_id = r.project_id AND {FITS}
    UNION ALL
    SELECT d.pk, j.id, 'footprint' FROM v_deps d JOIN v_rows r ON r.pk = d.pk
      JOIN jobs j ON j.deployment_id = d.deployment AND j.project_id = r.project_id AND {FITS}
    UNION ALL
    SELECT a.pk, j.id, 'algorithm' FROM v_algs a JOIN v_rows r ON r.pk = a.pk
      JOIN ml_pipeline_algorithms pa ON pa.algorithm_id = a.algorithm
      JOIN jobs j ON j.pipeline_id = pa.pipeline_id AND j.project_id = r.project_id AND {FITS}
    UNION ALL
    SELECT c.pk, j.id, 'log' FROM v_caps c JOIN v_rows r ON r.pk = c.pk JOIN named n ON n.capture = c.capture
      JOIN jobs j ON j.id = n.job AND j.project_id = r.project_id AND {FITS}
),
pairs AS MATERIALIZED (
    SELECT e.pk, e.job, bool_or(e.kind = 'footprint') AS footprint,
           bool_or(e.kind = 'algorithm') AS algorithm, bool_or(e.kind = 'log') AS logged
      FROM evidence e GROUP BY e.pk, e.job
),
scored AS (
    SELECT p.*, j.span, CASE WHEN footprint AND (algorithm OR logged) THEN 3 ELSE 2 END AS level,
           footprint::int + algorithm::int + logged::int AS evidence
      FROM pairs p JOIN jobs j ON j.id = p.job
),
agreed AS (
    SELECT DISTINCT ON (s.pk) s.pk, s.job, s.footprint, s.algorithm, s.logged,
           CASE WHEN count(*) OVER (PARTITION BY s.pk, s.level, s.evidence) > 1 THEN s.level - 1
                ELSE s.level END AS level,
           count(*) OVER (PARTITION BY s.pk, s.level, s.evidence) > 1 AS contested
      FROM scored s
     ORDER BY s.pk, s.level DESC, s.evidence DESC, s.span, s.job DESC
),
timed AS (
    SELECT r.pk, min(j.tightness) AS tightness, count(*) > 1 AS contested
      FROM reached x JOIN v_rows r ON r.pk = x.pk JOIN jobs j ON j.project_id = r.project_id AND {FITS}
     WHERE NOT EXISTS (SELECT FROM pairs p WHERE p.pk = x.pk)
     GROUP BY r.pk
),
best AS (
    SELECT pk, job, footprint, algorithm, logged, level, contested FROM agreed
    UNION ALL
    SELECT t.pk, j.id, false, false, false, 1, t.contested FROM timed t JOIN jobs j ON j.tightness = t.tightness
)
SELECT r.project_id AS row_project, b.job, b.level, count(*) AS n, count(*) FILTER (WHERE b.footprint) AS footprint,
       count(*) FILTER (WHERE b.algorithm) AS algorithm, count(*) FILTER (WHERE b.logged) AS logged,
       count(*) FILTER (WHERE b.contested) AS contested,
       (array_agg(r.pk ORDER BY r.pk))[1:%s] AS sample,
       min(r.created_at) AS first_row, (array_agg(r.pk ORDER BY r.created_at, r.pk))[1] AS first_id,
       max(r.updated_at) AS last_row, (array_agg(r.pk ORDER BY r.updated_at DESC, r.pk DESC))[1] AS last_id,
       min(j.job_type_key) AS type, min(j.status) AS status, min(p.name) AS pipeline,
       min(j.project_id) AS project, min(w.w0) AS w0, min(w.w1) AS w1, bool_and(w.finished) AS finished,
       min(j.source_image_collection_id) AS collection_id, min(j.source_image_single_id) AS single_id,
       min(j.deployment_id) AS deployment_id
  FROM v_rows r LEFT JOIN best b ON b.pk = r.pk
  LEFT JOIN jobs w ON w.id = b.job
  LEFT JOIN jobs_job j ON j.id = b.job
  LEFT JOIN ml_pipeline p ON p.id = j.pipeline_id
 GROUP BY r.project_id, b.job, b.level"""


def _origin(g: dict[str, Any]) -> Origin:
    first, last = _iso(g["first_row"]), _iso(g["last_row"])
    if g["job"] is None:
        return Origin(None, g["n"], list(g["sample"]), "none",
                      "unattributed: no job of the rows' project ran when they were written",
                      first_row=first, last_row=last)
    return Origin(
        g["job"], g["n"], list(g["sample"]), CONFIDENCE[g["level"]], _reason(g), type=g["type"], status=g["status"],
        pipeline=g["pipeline"], project=g["project"], window=[_iso(g["w0"]), _iso(g["w1"])],
        window_end="finished_at" if g["finished"] else "updated_at", first_row=first, last_row=last,
    )


def _reason(g: dict[str, Any]) -> str:
    """What agrees (for all the group's rows, or for how many of them) and what does not."""
    source = next((f"{kind} {g[column]}" for kind, column in
                   (("collection", "collection_id"), ("capture", "single_id"), ("deployment", "deployment_id"))
                   if g[column] is not None), None)
    pieces = [("footprint", f"input captures ({source})" if source else "input captures")]
    if g["pipeline"] is not None:
        pieces.append(("algorithm", "pipeline algorithms"))
    agree, disagree = ["time window"], []
    for column, label in pieces + [("logged", "its log naming the captures")]:
        if g[column] == g["n"]:
            agree.append(label)
        elif g[column]:
            agree.append(f"{label} (for {g[column]} of {g['n']})")
        elif column != "logged":
            disagree.append(label)
    text = f"{_and(agree)} agree" if len(agree) > 1 else "only the time window agrees"
    if disagree and len(agree) > 1:
        text += f"; not the {_and(disagree)}"
    if source is None:
        text += "; the job has no input captures"
    if g["contested"]:
        text += "; other jobs fit as well" + (f" (for {g['contested']} of {g['n']})" if g["contested"] < g["n"] else "")
    return text


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _iso(value: object) -> str | None:
    return value.isoformat(sep=" ", timespec="minutes") if isinstance(value, datetime) else None


def deploy_before(moment: datetime | None, migrations: list[tuple[str, str, datetime]] | None = None,
                  ) -> dict[str, Any] | None:
    """The deploy (migrations applied within ``DEPLOY_GAP`` of each other) last before ``moment``: its newest
    migration, how many came with it, and how long before ``moment`` it was applied."""
    migrations = _migrations() if migrations is None else migrations
    if moment is None:
        return None
    before = [m for m in migrations if m[2] <= moment]
    if not before:
        return None
    app, name, applied = before[-1]
    more = sum(1 for m in before[:-1] if m[2] >= applied - DEPLOY_GAP)
    return {"migration": f"{app}/{name}", "applied": _iso(applied), "with": more,
            "minutes_before": int((moment - applied).total_seconds() // 60)}


def _migrations() -> list[tuple[str, str, datetime]]:
    """Every applied migration (app, name, applied), oldest first: a few hundred rows, read once per rule."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('django_migrations') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return []
        cursor.execute("SELECT app, name, applied FROM django_migrations ORDER BY applied, id")
        return cursor.fetchall()


# What the reports say ---------------------------------------------------------------------------------------


def origin_line(o: dict[str, Any], unit: str) -> str:
    """``38 from job 2421 (ml, FAILURE, pipeline "Quebec moths 2025", 2026-04-16 02:00–02:40): high, window, …``"""
    if o["job"] is None:
        return f"{o['rows']} unattributed (no job's window holds them; written {span(o['first_row'], o['last_row'])})"
    pipeline = f', pipeline "{o["pipeline"]}"' if o.get("pipeline") else ""
    end = "" if o.get("window_end") == "finished_at" else ", never finished: last update"
    return (f"{o['rows']} most likely from job {o['job']} ({o['type']}, {o['status']}{pipeline}, "
            f"{span(*o['window'])}{end}): {o['confidence']} confidence, {o['reason']}")


def span(start: str | None, end: str | None) -> str:
    """Two times as one span (the date once when they share it)."""
    if start is None or end is None:
        return start or end or "?"
    if start[:10] == end[:10]:
        return f"{start}–{end[11:]}"
    return f"{start}–{end}"


def appeared_line(a: dict[str, Any], unit: str) -> str | None:
    """``oldest violating row 12 created 2026-04-16 02:03, newest written 02:38; 14 minutes after migration …``"""
    if not a.get("oldest"):
        return None
    text = (f"appeared: oldest violating {unit} {a['oldest']['id']} created {a['oldest']['created_at']}, "
            f"newest {a['newest']['id']} written {a['newest']['updated_at']}")
    deploy = a.get("deploy")
    if deploy:
        more = f" (with {deploy['with']} more)" if deploy["with"] else ""
        text += (f"; first violating row {_minutes(deploy['minutes_before'])} after migration "
                 f"{deploy['migration']}{more} was applied")
    return text


def _minutes(minutes: int) -> str:
    if minutes < 120:
        return f"{minutes} minutes"
    if minutes < 48 * 60:
        return f"{minutes // 60} hours"
    return f"{minutes // 1440} days"


def summary_lines(attribution: dict[str, Any], unit: str, limit: int = 5) -> list[str]:
    """The terminal's lines for one case: one per origin (at most ``limit``, then how many more), and when."""
    if not attribution.get("attributable"):
        return [attribution.get("reason") or "not attributable"]
    origins = attribution.get("origins") or []
    lines = [origin_line(o, unit) for o in origins[:limit]]
    if len(origins) > limit:
        lines.append(f"… {len(origins) - limit} more origins in reports/invariants.json")
    if attribution.get("reason"):
        lines.append(attribution["reason"])
    appeared = appeared_line(attribution, unit)
    return lines + ([appeared] if appeared else [])


def origin_summary(records: Sequence[Mapping[str, Any]], shown: int = 2) -> str:
    """A rule's origins over its cases, for summary.md: ``job 30: 38 (high); 3 unattributed``."""
    by_job: dict[int, tuple[int, str]] = {}
    unattributed, reasons = 0, set[str]()
    for record in records:
        attribution = record.get("attribution") or {}
        if attribution and not attribution.get("attributable"):
            reasons.add("not attributable")
        elif attribution.get("reason", "").startswith("not attributed ("):
            reasons.add(attribution["reason"].split(":")[0])  # "not attributed (warn)"
        for o in record.get("origins") or ():
            if o["job"] is None:
                unattributed += o["rows"]
                continue
            rows, best = by_job.get(o["job"], (0, "low"))
            better = o["confidence"] if LEVELS[o["confidence"]] > LEVELS[best] else best
            by_job[o["job"]] = (rows + o["rows"], better)
    ranked = sorted(by_job.items(), key=lambda item: (-item[1][0], item[0]))
    parts = [f"job {job}: {rows} ({confidence})" for job, (rows, confidence) in ranked[:shown]]
    if len(ranked) > shown:
        parts.append(f"{len(ranked) - shown} more jobs")
    if unattributed:
        parts.append(f"{unattributed} unattributed")
    return "; ".join(parts) or ", ".join(sorted(reasons))


LEVELS = {"none": 0, "low": 1, "medium": 2, "high": 3}


def first_seen_line(first_seen: dict[str, str] | None) -> str | None:
    """``first seen (of the ids shown): 18 in the run of 2026-11-25 06:00, 2 in the run of 2026-12-03 06:00``."""
    if not first_seen:
        return None
    runs: dict[str, int] = {}
    for seen in first_seen.values():
        runs[seen] = runs.get(seen, 0) + 1
    parts = [f"{n} in the run of {seen[:16].replace('T', ' ')}" for seen, n in sorted(runs.items())]
    return f"first seen (of the ids shown): {', '.join(parts)}"


def record_fields(attribution: dict[str, Any]) -> dict[str, Any]:
    """A case's JSON fields: ``attribution`` (without its origins) and ``origins`` (docs/reports.md)."""
    return {"attribution": {k: v for k, v in attribution.items() if k != "origins"},
            "origins": attribution.get("origins", [])}


def record_lines(o: Mapping[str, Any], unit: str) -> list[str]:
    """What a case's full text says about its origins and when they appeared (the terminal, JUnit)."""
    lines = []
    if o.get("attribution"):
        lines += summary_lines(o["attribution"] | {"origins": o.get("origins") or []}, unit)
    seen = first_seen_line(o.get("first_seen"))
    return lines + ([seen] if seen else [])
