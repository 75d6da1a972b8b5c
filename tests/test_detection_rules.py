"""N6: every real detection belongs to an occurrence (report only)."""

from antenna_invariants.rules import RULES
from antenna_invariants.scope import NO_PROJECT
from fixtures import factories as f
from fixtures.scenarios import detections as scenarios


def test_n6_flags_orphaned_real_detections_only(invariants):
    station = f.DeploymentFactory()
    orphan = scenarios.orphaned_detection(station)
    scenarios.empty_capture(station)  # a null marker without occurrence is how it should be
    healthy = f.OccurrenceFactory(event__deployment=station).detections.get()

    assert invariants.violators("N6", project=station.project) == {orphan.pk}
    assert healthy.pk not in invariants.violators("N6", project=station.project)


def test_n6_is_scoped_through_the_capture_not_the_missing_occurrence(invariants):
    mine, other = f.DeploymentFactory(), f.DeploymentFactory(project=None)
    orphan = scenarios.orphaned_detection(mine)
    unassigned = scenarios.orphaned_detection(other)

    assert invariants.violators("N6", project=mine.project) == {orphan.pk}
    assert invariants.violators("N6", project=NO_PROJECT) == {unassigned.pk}


def test_n6_is_report_only_and_check_writes_nothing(invariants):
    scenarios.orphaned_detection(f.DeploymentFactory())
    before = invariants.snapshot()
    assert invariants.check("N6").violations == 1
    assert invariants.snapshot() == before
    assert RULES["N6"].repair_func is None
