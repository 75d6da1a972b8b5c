"""Cached counts (K1-K3): captures, events and deployments carry counts that must equal a recount.

The recount is not a plain COUNT(*): detection, occurrence and taxa counts go through the default filters
of *the row's own* project (DF, ``antenna_invariants.filters``), null markers never count, and the
deployment's occurrence and taxa counts only take occurrences that have an event (fact sheet §3, §11.4).
Antenna refreshes none of them after an identification, a post-processing step or a direct deletion, and
not after a filter change unless its signal ran, so drift is routine; every repair is a pure recompute.

One ``Recount`` per table computes the true values for a queryset of its rows in one statement; the rule
compares them with the cached columns (``IS DISTINCT FROM``: a NULL cache where the truth is 0 is stale)
and the repair writes them with one UPDATE, restricted to the violators and re-checking the difference.
"""

from __future__ import annotations

from django.db import connection
from django.db.models.expressions import RawSQL

from antenna_invariants.filters import passes_default_filters
from antenna_invariants.rules import rule


class Recount:
    """The true values of ``columns`` of ``table`` for a queryset of its rows.

    ``template`` is a SELECT with one row per target id (``id`` plus every column), where ``{target}`` is
    the queryset's ``SELECT id`` (evaluated once, as a semi-join, so duplicates cannot inflate a count).
    """

    def __init__(self, table: str, columns: list[str], template: str, also_set: str = ""):
        self.table, self.columns, self.template, self.also_set = table, columns, template, also_set

    def truth(self, queryset) -> tuple[str, list]:
        target, params = queryset.order_by().values("pk").query.sql_with_params()
        return self.template.format(target=target), list(params)

    def differs(self, row: str = "x", truth: str = "t") -> str:
        cached = ", ".join(f'{row}."{c}"' for c in self.columns)
        true = ", ".join(f'{truth}."{c}"' for c in self.columns)
        return f"ROW({cached}) IS DISTINCT FROM ROW({true})"

    def stale(self, queryset):
        """The rows of ``queryset`` whose cached values differ from the recount (side-effect free).  The
        recount already keeps to the queryset's rows, so the result does not filter by it a second time
        (a doubly nested scope misleads the planner when statistics are missing)."""
        sql, params = self.truth(queryset)
        stale = f"SELECT t.id FROM ({sql}) t JOIN {self.table} x ON x.id = t.id WHERE {self.differs()}"
        return queryset.model.objects.filter(pk__in=RawSQL(stale, params))

    def write(self, violators) -> int:
        """Write the recount onto ``violators`` (still stale at the time of the statement); rows changed."""
        sql, params = self.truth(violators)
        assignments = ", ".join(f'"{c}" = t."{c}"' for c in self.columns) + self.also_set
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {self.table} x SET {assignments} FROM ({sql}) t WHERE x.id = t.id AND {self.differs()}",
                params,
            )
            return cursor.rowcount


CAPTURES = Recount(
    "main_sourceimage",
    ["detections_count"],
    f"""
    SELECT s.id,
           count(d.id) FILTER (WHERE {passes_default_filters("o", "s.project_id")}) AS detections_count
      FROM main_sourceimage s
      LEFT JOIN main_detection d ON d.source_image_id = s.id AND d.bbox IS NOT NULL
      LEFT JOIN main_occurrence o ON o.id = d.occurrence_id
     WHERE s.id IN ({{target}})
     GROUP BY s.id
    """,
)

EVENTS = Recount(
    "main_event",
    ["start", "end", "captures_count", "detections_count", "occurrences_count"],
    f"""
    WITH target AS (SELECT e.id, e.project_id, e."start", e."end" FROM main_event e WHERE e.id IN ({{target}})),
    captures AS (
        SELECT s.event_id, count(*) AS n, min(s."timestamp") AS first_seen,
               CASE WHEN bool_or(s."timestamp" IS NULL) THEN NULL ELSE max(s."timestamp") END AS last_seen
          FROM main_sourceimage s JOIN target ON target.id = s.event_id
         GROUP BY s.event_id),
    detections AS (
        SELECT s.event_id, count(*) AS n
          FROM main_sourceimage s JOIN target ON target.id = s.event_id
          JOIN main_detection d ON d.source_image_id = s.id AND d.bbox IS NOT NULL
          LEFT JOIN main_occurrence o ON o.id = d.occurrence_id
         WHERE {passes_default_filters("o", "target.project_id")}
         GROUP BY s.event_id),
    occurrences AS (
        SELECT o.event_id, count(*) AS n
          FROM main_occurrence o JOIN target ON target.id = o.event_id
         WHERE {passes_default_filters("o", "target.project_id")}
         GROUP BY o.event_id)
    SELECT target.id,
           coalesce(captures.first_seen, target."start") AS "start",
           CASE WHEN captures.n IS NULL THEN target."end" ELSE captures.last_seen END AS "end",
           coalesce(captures.n, 0) AS captures_count,
           coalesce(detections.n, 0) AS detections_count,
           coalesce(occurrences.n, 0) AS occurrences_count
      FROM target
      LEFT JOIN captures ON captures.event_id = target.id
      LEFT JOIN detections ON detections.event_id = target.id
      LEFT JOIN occurrences ON occurrences.event_id = target.id
    """,
    also_set=", calculated_fields_updated_at = now()",
)

DEPLOYMENTS = Recount(
    "main_deployment",
    [
        "data_source_total_files",
        "data_source_total_size",
        "events_count",
        "captures_count",
        "detections_count",
        "occurrences_count",
        "taxa_count",
        "first_capture_timestamp",
        "last_capture_timestamp",
    ],
    f"""
    WITH target AS (SELECT d.id, d.project_id FROM main_deployment d WHERE d.id IN ({{target}})),
    captures AS (
        SELECT s.deployment_id, count(*) AS n, sum(s.size) AS size,
               min(s."timestamp") AS first_seen, max(s."timestamp") AS last_seen
          FROM main_sourceimage s JOIN target ON target.id = s.deployment_id
         GROUP BY s.deployment_id),
    events AS (
        SELECT e.deployment_id, count(*) AS n
          FROM main_event e JOIN target ON target.id = e.deployment_id
         GROUP BY e.deployment_id),
    detections AS (
        SELECT s.deployment_id, count(*) AS n
          FROM main_sourceimage s JOIN target ON target.id = s.deployment_id
          JOIN main_detection d ON d.source_image_id = s.id AND d.bbox IS NOT NULL
          LEFT JOIN main_occurrence o ON o.id = d.occurrence_id
         WHERE {passes_default_filters("o", "target.project_id")}
         GROUP BY s.deployment_id),
    occurrences AS (
        SELECT o.deployment_id, count(*) AS n,
               count(DISTINCT o.determination_id) + bool_or(o.determination_id IS NULL)::int AS taxa
          FROM main_occurrence o JOIN target ON target.id = o.deployment_id
         WHERE o.event_id IS NOT NULL AND {passes_default_filters("o", "target.project_id")}
         GROUP BY o.deployment_id)
    SELECT target.id,
           coalesce(captures.n, 0) AS data_source_total_files,
           captures.size AS data_source_total_size,
           coalesce(events.n, 0) AS events_count,
           coalesce(captures.n, 0) AS captures_count,
           coalesce(detections.n, 0) AS detections_count,
           coalesce(occurrences.n, 0) AS occurrences_count,
           coalesce(occurrences.taxa, 0) AS taxa_count,
           captures.first_seen AS first_capture_timestamp,
           captures.last_seen AS last_capture_timestamp
      FROM target
      LEFT JOIN captures ON captures.deployment_id = target.id
      LEFT JOIN events ON events.deployment_id = target.id
      LEFT JOIN detections ON detections.deployment_id = target.id
      LEFT JOIN occurrences ON occurrences.deployment_id = target.id
    """,
)


@rule("K1", risk="L", depends_on=("detections__occurrence", "project"))
def test_capture_detections_count_matches_a_recount(captures):
    """A capture's detections_count equals the number of its real detections (bbox set) whose occurrence
    passes the default filters of the capture's project; with no project, every real detection counts.
    A detection without an occurrence never counts in a project (its score is NULL)."""
    return CAPTURES.stale(captures)


@test_capture_detections_count_matches_a_recount.repair
def recount_the_capture(violators):
    """Write the recount (what update_detection_counts does for a non-empty queryset)."""
    return CAPTURES.write(violators)


@rule("K2", risk="L", depends_on=("captures__detections__occurrence", "occurrences", "project"))
def test_event_cached_fields_match_a_recount(events):
    """An event's captures_count, detections_count (real detections on its captures whose occurrence passes
    the event project's default filters) and occurrences_count (occurrences of the event passing them,
    real detection or not: a phantom with a score counts) equal a recount, and start / end are what
    update_calculated_fields_for_events writes (K2 flags the bounds and counts Antenna's own refresh would change).
    For an event with captures, start is the earliest capture timestamp and end the latest, or NULL when
    any capture has none (Antenna takes the first row ordered by -timestamp, and PostgreSQL sorts NULL
    first).  Start stays as it is for an event without a timestamped capture (start is NOT NULL, Antenna's
    write would fail), and both stay for an event without captures (E2's business).  It deliberately
    overlaps C6 and E1: an event with start > end or with a capture outside [start, end] gets the bounds
    of its captures, as Antenna's refresh would give it."""
    return EVENTS.stale(events)


@test_event_cached_fields_match_a_recount.repair
def recount_the_event(violators):
    """Write the recount and stamp calculated_fields_updated_at (what update_calculated_fields_for_events
    does for a non-empty list of ids)."""
    return EVENTS.write(violators)


@rule("K3", risk="L", depends_on=("captures__detections__occurrence", "events", "occurrences", "project"))
def test_deployment_cached_fields_match_a_recount(deployments):
    """A deployment's data_source_total_files and captures_count (its captures), data_source_total_size (sum
    of their sizes, NULL without captures), events_count, detections_count (real detections on its captures
    passing its project's default filters), occurrences_count and taxa_count (occurrences of the deployment
    that have an event and pass the filters) and first / last capture timestamps equal a recount.  taxa_count
    is Antenna's occ_qs.values("determination_id").distinct().count() (Deployment.update_calculated_fields):
    the distinct determinations of those occurrences, a NULL one counting as one value.  A sync in progress
    may briefly hold the storage file count."""
    return DEPLOYMENTS.stale(deployments)


@test_deployment_cached_fields_match_a_recount.repair
def recount_the_deployment(violators):
    """Write the recount (Deployment.update_calculated_fields without save(), which could regroup)."""
    return DEPLOYMENTS.write(violators)
