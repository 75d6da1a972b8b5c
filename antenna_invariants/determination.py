"""The expected determination of an occurrence (fact sheet §4.1, §4.2, §4.7), in one SQL statement.

Shared by every determination rule (D1-D4) and by their repairs, so check and repair cannot disagree;
repairs of other tables that change the evidence (D7) recompute through ``rewrite_expected``.

- The best active identification (newest ``created_at``, then higher id) decides when it exists: its taxon
  with score 1.0.  If its taxon is NULL the occurrence is *blocked*: Antenna does not fall back to the
  machine (§4.2 step 3), so there is no expected value and a repair leaves it alone (unfixable, see S7).
- Otherwise the best machine prediction decides: among the classifications on the occurrence's *real*
  detections that carry a taxon and a score, keep those whose score equals one of the per-algorithm maxima
  (a NULL algorithm is one group), then terminal first, higher score, higher id.
  Deviations from Antenna's code, on purpose: classifications on null markers and classifications without
  a taxon are not evidence (Antenna's seed tool counted both); ties break by higher id (as the API does).
- A winning score of 0.0 is written as NULL, as Antenna writes it: ``update_occurrence_determination`` sets
  the score only ``if new_score`` (ami/main/models.py at 731cc2a2), so "determination set, score NULL" is
  what Antenna leaves when the winner scored 0.0.  A stored 0.0 is accepted as well (``SCORE_IS_EXPECTED``).
- Without evidence the expected pair is (NULL, NULL), but a determination is never cleared here (Antenna never
  sets it back to NULL; clearing it is a person's call, D5): only a stray score beside no determination is.

Every determination rule states its sentence with ``TAXON_IS_EXPECTED`` / ``SCORE_IS_EXPECTED`` and repairs
through ``write_expected``, which writes the whole expected pair: repairs of overlapping rules (D1-D4) write
the same values, in any order.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL

from antenna_invariants import journal
from antenna_invariants.mirror.models import Classification, Identification, Occurrence

# what the expected determination reads besides the occurrence: the rows a repair locks (``@rule(depends_on=)``)
EVIDENCE = ("identifications", "detections__classifications")

EXPECTED_SQL = """
WITH target(id) AS ({target}),
best_identification AS (
    SELECT DISTINCT ON (i.occurrence_id) i.occurrence_id, i.taxon_id
    FROM main_identification i JOIN target ON target.id = i.occurrence_id
    WHERE NOT i.withdrawn
    ORDER BY i.occurrence_id, i.created_at DESC, i.id DESC
),
evidence AS (
    SELECT d.occurrence_id, c.id, c.algorithm_id, c.taxon_id, c.score, c.terminal
    FROM main_classification c
    JOIN main_detection d ON d.id = c.detection_id
    JOIN target ON target.id = d.occurrence_id
    WHERE d.bbox IS NOT NULL AND c.taxon_id IS NOT NULL AND c.score IS NOT NULL
),
maxima AS (
    SELECT occurrence_id, max(score) AS score FROM evidence GROUP BY occurrence_id, algorithm_id
),
best_prediction AS (
    SELECT DISTINCT ON (e.occurrence_id) e.occurrence_id, e.taxon_id, e.score
    FROM evidence e
    WHERE EXISTS (SELECT 1 FROM maxima m WHERE m.occurrence_id = e.occurrence_id AND m.score = e.score)
    ORDER BY e.occurrence_id, e.terminal DESC, e.score DESC, e.id DESC
)
SELECT target.id AS occurrence_id,
       CASE WHEN bi.occurrence_id IS NOT NULL THEN bi.taxon_id ELSE bp.taxon_id END AS taxon_id,
       CASE WHEN bi.occurrence_id IS NOT NULL THEN CASE WHEN bi.taxon_id IS NULL THEN NULL ELSE 1.0::float8 END
            ELSE bp.score END AS score,
       bi.occurrence_id IS NOT NULL AS human,
       bi.occurrence_id IS NOT NULL AND bi.taxon_id IS NULL AS blocked
FROM target
LEFT JOIN best_identification bi ON bi.occurrence_id = target.id
LEFT JOIN best_prediction bp ON bp.occurrence_id = target.id
"""


TAXON_IS_EXPECTED = "o.determination_id IS NOT DISTINCT FROM e.taxon_id"
SCORE_IS_EXPECTED = (
    "(o.determination_score IS NOT DISTINCT FROM e.score OR (e.score = 0 AND o.determination_score IS NULL))"
)
WRITTEN_SCORE = "NULLIF(e.score, 0)"  # what Antenna writes: a falsy score never


def _evidence() -> tuple[Exists, Exists]:
    machine = Classification.objects.filter(
        detection__occurrence=OuterRef("pk"), detection__bbox__isnull=False, taxon__isnull=False
    )
    human = Identification.objects.filter(occurrence=OuterRef("pk"), withdrawn=False, taxon__isnull=False)
    return Exists(machine), Exists(human)


def has_evidence() -> Q:
    """Q-able test: the occurrence has a classification with a taxon on a real detection, or an active
    identification with a taxon."""
    machine, human = _evidence()
    return machine | human


def has_no_evidence() -> Q:
    """The negation of ``has_evidence``, written as two NOT EXISTS so PostgreSQL can plan anti-joins."""
    machine, human = _evidence()
    return ~machine & ~human


def expected_sql(occurrences: QuerySet) -> tuple[str, list[Any]]:
    """SQL and params giving (occurrence_id, taxon_id, score, human, blocked) for a queryset of occurrences."""
    target, params = occurrences.order_by().values("pk").query.sql_with_params()
    return EXPECTED_SQL.format(target=target), list(params)


def write_expected(occurrences: QuerySet, *, only_where: str = "TRUE") -> int:
    """Set determination and score to the expected value for ``occurrences`` (one UPDATE).

    ``only_where`` is an extra SQL condition on ``o`` (the occurrence) and ``e`` (the expected row), so a
    rule can re-check its own violation inside the statement.  Blocked rows are never touched, rows already
    at the expected pair are not rewritten, and a determination is never cleared: without evidence only a
    score beside no determination is (set to NULL).

    The occurrences' ids are read first and handed over as a list: the planner then knows how many rows it
    joins (a re-checked violation condition looks like a handful to it, and it would join the evidence to
    thousands of rows by nested loops), and it reaches the rows to update by their primary key, not by an
    index on the re-checked column (a NULL determination: every undetermined occurrence, for each batch;
    docs/benchmarks.md).
    """
    ids = list(occurrences.order_by().values_list("pk", flat=True))
    if not ids:
        return 0
    sql, params = expected_sql(Occurrence.objects.filter(pk__any=ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE main_occurrence o
               SET determination_id = e.taxon_id, determination_score = {WRITTEN_SCORE}, updated_at = now()
              FROM ({sql}) e
             WHERE o.id = e.occurrence_id AND o.id = ANY(%s) AND NOT e.blocked
               AND (e.taxon_id IS NOT NULL OR o.determination_id IS NULL)
               AND NOT ({TAXON_IS_EXPECTED} AND {SCORE_IS_EXPECTED})
               AND ({only_where})
            """,
            [*params, ids],
        )
        return cursor.rowcount


def where_expected(occurrences: QuerySet, condition: str) -> QuerySet:
    """The occurrences for which ``condition`` holds, an SQL test on ``o`` (the occurrence) and ``e`` (its
    expected row); the expected values are computed once for the whole queryset, not per row."""
    sql, params = expected_sql(occurrences)
    matching = f"SELECT o.id FROM ({sql}) e JOIN main_occurrence o ON o.id = e.occurrence_id WHERE {condition}"
    return occurrences.model.objects.filter(pk__in=RawSQL(matching, params))  # the rows of ``occurrences`` only


def rewrite_expected(occurrence_ids: list[int]) -> int:
    """For a repair of another table that changes occurrences' evidence (an identification withdrawn, a
    classification removed): journal those occurrences, then write their expected determination."""
    journal.current("rewriting determinations from a repair").journal.watch(Occurrence, list(occurrence_ids))
    return write_expected(Occurrence.objects.filter(pk__any=list(occurrence_ids)))
