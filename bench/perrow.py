"""The baseline to beat: Antenna's original repair path, one occurrence at a time through the ORM.

Per occurrence: read it, read its newest active identification, read the classifications of its real
detections, pick the determination in Python, save.  Same decision as ``determination.EXPECTED_SQL``
(written here independently), so the two can be compared row by row.
"""

from __future__ import annotations


def determine(occurrence_id: int) -> None:
    from antenna_invariants.mirror.models import (
        Classification,
        Identification,
        Occurrence,
    )

    occurrence = Occurrence.objects.get(pk=occurrence_id)
    identification = (
        Identification.objects.filter(occurrence_id=occurrence_id, withdrawn=False)
        .order_by("-created_at", "-pk")
        .first()
    )
    if identification is not None:
        if identification.taxon_id is None:
            return  # blocked: a person's call, never the machine's
        taxon, score = identification.taxon_id, 1.0
    else:
        predictions = list(
            Classification.objects.filter(
                detection__occurrence_id=occurrence_id,
                detection__bbox__isnull=False,
                taxon__isnull=False,
                score__isnull=False,
            )
        )
        if not predictions:
            return
        maxima: dict[int | None, float] = {}
        for prediction in predictions:
            algorithm = prediction.algorithm_id
            maxima[algorithm] = max(prediction.score, maxima.get(algorithm, prediction.score))
        leaders = [p for p in predictions if p.score in maxima.values()]
        best = max(leaders, key=lambda p: (p.terminal, p.score, p.pk))
        taxon, score = best.taxon_id, best.score
    if (occurrence.determination_id, occurrence.determination_score) != (taxon, score):
        occurrence.determination_id, occurrence.determination_score = taxon, score
        occurrence.save(update_fields=["determination", "determination_score", "updated_at"])


def repair_one_by_one(occurrence_ids) -> None:
    for occurrence_id in occurrence_ids:
        determine(occurrence_id)
