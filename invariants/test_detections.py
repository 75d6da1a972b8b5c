"""Detections and null markers."""

from antenna_invariants.rules import rule


@rule("N6", risk="L", hint="re-run the occurrence step for these captures, or create one occurrence per detection")
def test_real_detection_has_an_occurrence(detections):
    """Every real detection (bbox set) belongs to an occurrence; an occurrence deleted through the ORM
    leaves its detections orphaned, hidden from every count."""
    return detections.filter(bbox__isnull=False, occurrence__isnull=True)
