"""D1 (determination present when there is evidence) and F1 (no phantom occurrences)."""

import json

from antenna_invariants.journal import restore
from antenna_invariants.mirror.models import Detection, Identification, Occurrence
from antenna_invariants.scope import NO_PROJECT
from fixtures import factories as f
from fixtures.scenarios import detections
from fixtures.scenarios import occurrences as scenarios


def test_d1_flags_partial_saves_and_identified_occurrences_only(invariants):
    station = f.DeploymentFactory()
    partial = scenarios.partial_save(station)
    identified = scenarios.identified_but_undetermined(station)
    healthy = f.OccurrenceFactory(event__deployment=station)
    near_misses = [scenarios.unclassifiable_occurrence(station), scenarios.human_determined(station)]

    assert invariants.violators("D1", project=station.project) == {partial.pk, identified.pk}
    assert healthy.pk not in invariants.violators("D1", project=station.project)
    assert not {o.pk for o in near_misses} & invariants.violators("D1", project=station.project)


def test_d1_ignores_classifications_on_null_markers(invariants):
    station = f.DeploymentFactory()
    occurrence = f.OccurrenceFactory(event__deployment=station, phantom=True)
    marker = occurrence.detections.get()
    f.ClassificationFactory(detection=marker)

    assert occurrence.pk not in invariants.violators("D1", project=station.project)


def test_d1_respects_project_and_occurrence_scope(invariants):
    mine, other = f.DeploymentFactory(), f.DeploymentFactory()
    a, b = scenarios.partial_save(mine), scenarios.partial_save(mine)
    theirs = scenarios.partial_save(other)
    unassigned = scenarios.partial_save(f.DeploymentFactory(project=None))

    assert invariants.violators("D1", project=mine.project) == {a.pk, b.pk}
    assert invariants.violators("D1", project=NO_PROJECT) == {unassigned.pk}
    assert invariants.violators("D1", project=mine.project, occurrences=[b]) == {b.pk}

    invariants.repair("D1", project=mine.project)
    theirs.refresh_from_db()
    assert theirs.determination_id is None
    assert invariants.violators("D1", project=other.project) == {theirs.pk}


def test_d1_repair_writes_the_expected_determination(invariants):
    station = f.DeploymentFactory()
    partial = scenarios.partial_save(station, detections__score=0.55)
    identified = scenarios.identified_but_undetermined(station)
    human = identified.identifications.get()
    healthy = f.OccurrenceFactory(event__deployment=station)
    before = Occurrence.objects.filter(pk=healthy.pk).values().get()

    outcome = invariants.repair("D1", project=station.project)

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("repaired", 2, 0)
    partial.refresh_from_db()
    machine = partial.detections.get().classifications.get()
    assert (partial.determination_id, partial.determination_score) == (machine.taxon_id, 0.55)
    identified.refresh_from_db()
    assert (identified.determination_id, identified.determination_score) == (human.taxon_id, 1.0)
    assert Occurrence.objects.filter(pk=healthy.pk).values().get() == before
    assert invariants.repair("D1", project=station.project).fixed == 0  # idempotent


def test_d1_prefers_terminal_per_algorithm_maxima_then_higher_id(invariants):
    station = f.DeploymentFactory()
    occurrence = scenarios.partial_save(station, detections__score=0.3)
    detection = occurrence.detections.get()
    first = detection.classifications.get()
    algorithm = first.algorithm
    non_terminal = f.ClassificationFactory(detection=detection, algorithm=algorithm, score=0.8, terminal=False)
    f.ClassificationFactory(detection=detection, score=0.5, terminal=False)  # another algorithm, 0.5 max
    invariants.repair("D1", project=station.project)
    occurrence.refresh_from_db()
    # maxima are {0.8, 0.5}; 0.3 is not one of them, so the non-terminal 0.8 wins (Antenna's rule)
    assert (occurrence.determination_id, occurrence.determination_score) == (non_terminal.taxon_id, 0.8)

    tied = scenarios.partial_save(station, detections__score=0.7)
    detection = tied.detections.get()
    later = f.ClassificationFactory(detection=detection, score=0.7, algorithm=f.AlgorithmFactory())
    invariants.repair("D1", project=station.project)
    tied.refresh_from_db()
    assert tied.determination_id == later.taxon_id  # equal terminal scores: the higher id wins


def test_d1_counts_blocked_occurrences_as_unfixable(invariants):
    station = f.DeploymentFactory()
    blocked = scenarios.partial_save(station)
    f.IdentificationFactory(occurrence=blocked, taxon=None)  # newest active identification, no taxon
    fixable = scenarios.partial_save(station)

    outcome = invariants.repair("D1", project=station.project)

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("failed", 1, 1)
    assert invariants.violators("D1", project=station.project) == {blocked.pk}
    fixable.refresh_from_db()
    assert fixable.determination_id is not None


def test_d1_check_mode_writes_nothing(invariants):
    station = f.DeploymentFactory()
    scenarios.partial_save(station)
    before = invariants.snapshot()
    outcome = invariants.check("D1", project=station.project)
    assert outcome.violations == 1
    assert invariants.snapshot() == before


def test_f1_flags_phantoms_not_empty_captures(invariants):
    station = f.DeploymentFactory()
    phantom = scenarios.phantom_occurrence(station)
    bare = f.OccurrenceFactory(event__deployment=station, detections=0)
    detections.empty_capture(station)
    healthy = f.OccurrenceFactory(event__deployment=station)
    scenarios.partial_save(station)  # has a real detection: a D1 problem, never an F1 one

    assert invariants.violators("F1", project=station.project) == {phantom.pk, bare.pk}
    assert healthy.pk not in invariants.violators("F1", project=station.project)


def test_f1_repair_journals_then_deletes_exactly_the_phantoms(invariants):
    station, other = f.DeploymentFactory(), f.DeploymentFactory()
    phantom = scenarios.phantom_occurrence(station, identified=True)
    marker = phantom.detections.get()
    identification = phantom.identifications.get()
    agreeing = f.IdentificationFactory(agreed_with_identification=identification)
    theirs = scenarios.phantom_occurrence(other)
    healthy = f.OccurrenceFactory(event__deployment=station)

    outcome = invariants.repair("F1", project=station.project)

    assert (outcome.status, outcome.fixed) == ("repaired", 1)  # occurrences deleted, not the cascade total
    assert not Occurrence.objects.filter(pk=phantom.pk).exists()
    assert not Identification.objects.filter(pk=identification.pk).exists()
    assert Detection.objects.get(pk=marker.pk).occurrence_id is None
    assert Identification.objects.get(pk=agreeing.pk).agreed_with_identification_id is None
    assert Occurrence.objects.filter(pk__in=[theirs.pk, healthy.pk]).count() == 2

    lines = [json.loads(line) for line in invariants.journal.path.read_text().splitlines()]
    deleted = {(e["table"], e["row"]["id"]) for e in lines if e["op"] == "delete"}
    assert deleted == {("main_occurrence", phantom.pk), ("main_identification", identification.pk)}
    assert invariants.repair("F1", project=station.project).fixed == 0  # idempotent


def test_f1_journal_restores_what_the_repair_deleted(invariants):
    station = f.DeploymentFactory()
    phantom = scenarios.phantom_occurrence(station, identified=True)
    identification = phantom.identifications.get()
    agreeing = f.IdentificationFactory(agreed_with_identification=identification)
    before = invariants.snapshot()

    invariants.repair("F1", project=station.project)
    assert invariants.snapshot() != before
    restore(invariants.journal.path)

    assert invariants.snapshot() == before
    assert Identification.objects.get(pk=agreeing.pk).agreed_with_identification_id == identification.pk
