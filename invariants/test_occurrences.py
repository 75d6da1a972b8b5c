"""Occurrences: determination (D1) and validity (F1)."""

from django.db.models import Exists, OuterRef

from antenna_invariants.determination import has_evidence, write_expected
from antenna_invariants.journal import delete_journaled
from antenna_invariants.mirror.models import Detection
from antenna_invariants.rules import rule


@rule("D1", risk="M")
def test_occurrence_with_evidence_has_a_determination(occurrences):
    """An occurrence whose real detections carry a classification with a taxon, or that has an active
    identification with a taxon, has a determination (the partial-save bug)."""
    return occurrences.filter(has_evidence(), determination__isnull=True)


@test_occurrence_with_evidence_has_a_determination.repair
def determine_from_the_evidence(violators):
    """Write the expected determination and score; an occurrence whose newest active identification has
    no taxon stays unfixable (see S7)."""
    return write_expected(violators, only_where="o.determination_id IS NULL")


def has_real_detection():
    return Exists(Detection.objects.filter(occurrence=OuterRef("pk"), bbox__isnull=False))


@rule("F1", risk="H")
def test_occurrence_has_a_real_detection(occurrences):
    """Every occurrence has at least one real detection (bbox set): no phantom occurrences."""
    return occurrences.filter(~has_real_detection())


@test_occurrence_has_a_real_detection.repair
def delete_the_phantom(violators):
    """Delete the phantom after journaling it, its identifications and its null markers' links."""
    return delete_journaled(violators)
