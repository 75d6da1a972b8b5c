"""Identification rules: S7 (an active identification has a taxon), C10 (agreements stay inside the
occurrence), D7 (one active identification per person and occurrence)."""

import pytest
from plugins.contract import for_each_rule

from antenna_invariants.mirror.models import Classification, Identification, Occurrence
from antenna_invariants.rules import RULES
from antenna_invariants.undo import undo
from fixtures import factories as f
from fixtures.scenarios import identifications as scenarios
from fixtures.scenarios import occurrences


def active(*identifications):
    ids = [i.pk for i in identifications]
    return set(Identification.objects.filter(pk__in=ids, withdrawn=False).values_list("pk", flat=True))


@pytest.mark.covers("S7", "planted", "near_miss")
def test_s7_flags_active_identifications_without_a_taxon(invariants):
    station = f.DeploymentFactory()
    deleted = scenarios.identified_taxon_deleted(station)
    occurrence = f.OccurrenceFactory(event__deployment=station)
    older = f.IdentificationFactory(occurrence=occurrence, taxon=None, created_at=f.T0)
    f.IdentificationFactory(occurrence=occurrence)  # no longer blocking, but still active without a taxon
    withdrawn = scenarios.withdrawn_without_taxon(station)
    healthy = f.IdentificationFactory(occurrence=f.OccurrenceFactory(event__deployment=station))

    assert invariants.violators("S7", project=station.project) == {deleted.pk, older.pk}
    assert not {withdrawn.pk, healthy.pk} & invariants.violators("S7", project=station.project)
    assert RULES["S7"].repair_func is None
    assert RULES["S7"].hint


@pytest.mark.covers("C10", "planted", "near_miss")
def test_c10_flags_agreements_with_rows_of_other_occurrences(invariants):
    station = f.DeploymentFactory()
    with_identification = scenarios.agreed_with_another_occurrences_identification(station)
    with_prediction = scenarios.agreed_with_another_occurrences_prediction(station)
    orphaned = scenarios.agreement_within_the_occurrence(station).agreed_with_identification
    Classification.objects.filter(pk=orphaned.agreed_with_prediction_id).update(detection=None)  # detection deleted
    within = scenarios.agreement_within_the_occurrence(station)
    near_misses = {within.pk, within.agreed_with_identification_id}
    near_misses |= {f.IdentificationFactory(occurrence=f.OccurrenceFactory(event__deployment=station)).pk}

    flagged = {with_identification.pk, with_prediction.pk, orphaned.pk}
    assert invariants.violators("C10", project=station.project) == flagged
    assert not near_misses & invariants.violators("C10", project=station.project)
    assert RULES["C10"].repair_func is None
    assert RULES["C10"].hint


@pytest.mark.covers("C10", "planted")
def test_c10_flags_a_prediction_whose_detection_left_the_occurrence(invariants):
    station = f.DeploymentFactory()
    within = scenarios.agreement_within_the_occurrence(station)
    first = within.agreed_with_identification
    Classification.objects.filter(pk=first.agreed_with_prediction_id).update(
        detection=f.OccurrenceFactory(event__deployment=station).detections.get()
    )

    assert invariants.violators("C10", project=station.project) == {first.pk}


@pytest.mark.covers("D7", "planted", "near_miss")
def test_d7_flags_all_but_the_newest_active_identification_of_a_person(invariants):
    station = f.DeploymentFactory()
    pair = scenarios.duplicate_active_identifications(station)
    triple = scenarios.duplicate_active_identifications(station, count=3)
    tied = scenarios.duplicate_active_identifications(station, created_at=f.T0)  # same created_at: higher id wins
    near_misses = [
        *scenarios.withdrawn_duplicates(station),
        *scenarios.anonymous_duplicates(station),
        *scenarios.two_identifiers(station),
    ]
    person = pair[0].user  # the same person on another occurrence is a different group
    elsewhere = f.IdentificationFactory(occurrence=f.OccurrenceFactory(event__deployment=station), user=person)

    assert invariants.violators("D7", project=station.project) == {pair[0].pk, triple[0].pk, triple[1].pk, tied[0].pk}
    assert not {i.pk for i in [*near_misses, elsewhere]} & invariants.violators("D7", project=station.project)


@pytest.mark.covers("D7", "repair")
def test_d7_repair_withdraws_the_older_ones_and_recomputes_the_determination(invariants):
    station = f.DeploymentFactory()
    pair = scenarios.duplicate_active_identifications(station)
    triple = scenarios.duplicate_active_identifications(station, count=3)
    near_misses = scenarios.two_identifiers(station)
    healthy = f.OccurrenceFactory(event__deployment=station)
    before = Occurrence.objects.filter(pk__in=[healthy.pk, near_misses[0].occurrence_id]).values()
    before = sorted(before, key=lambda row: row["id"])

    outcome = invariants.repair("D7", project=station.project)

    assert (outcome.status, outcome.fixed) == ("repaired", 3)  # identifications withdrawn
    assert active(*pair, *triple, *near_misses) == {pair[-1].pk, triple[-1].pk, *(i.pk for i in near_misses)}
    for newest in (pair[-1], triple[-1]):
        occurrence = Occurrence.objects.get(pk=newest.occurrence_id)
        assert (occurrence.determination_id, occurrence.determination_score) == (newest.taxon_id, 1.0)
    after = Occurrence.objects.filter(pk__in=[healthy.pk, near_misses[0].occurrence_id]).values()
    assert sorted(after, key=lambda row: row["id"]) == before
    assert invariants.repair("D7", project=station.project).fixed == 0  # idempotent


def test_d7_journal_restores_the_identifications_and_the_determinations(invariants):
    station = f.DeploymentFactory()
    scenarios.duplicate_active_identifications(station, count=3)
    before = invariants.snapshot()

    invariants.repair("D7", project=station.project)
    assert invariants.snapshot() != before
    undo(invariants.journal.path)

    assert invariants.snapshot() == before


PLANTED = {  # rule -> builds one defect in a deployment and returns the violating row(s)
    "S7": scenarios.identified_taxon_deleted,
    "C10": scenarios.agreed_with_another_occurrences_prediction,
    "D7": lambda station: scenarios.duplicate_active_identifications(station)[0],
}


@for_each_rule(PLANTED, "scope")
def test_rule_respects_project_and_occurrence_scope(invariants, rule_id, plant):
    invariants.assert_scoped(rule_id, plant)


@pytest.mark.parametrize("rule_id", sorted(PLANTED))
def test_check_mode_writes_nothing(invariants, rule_id):
    invariants.assert_check_writes_nothing(rule_id, scenarios.seed, occurrences.seed)
