"""Classifications: S1, S2, C8, C9 and G1-G6."""

import pytest
from plugins.contract import for_each_rule

from antenna_invariants.mirror.models import Classification
from antenna_invariants.rules import RULES
from antenna_invariants.scope import NO_PROJECT
from fixtures import factories as f
from fixtures.scenarios import classifications as scenarios

PLANTED = {  # rule -> builds one defect in a deployment and returns the violating row(s); S1 has no project
    "S2": lambda station: scenarios.classification_without(station, "taxon"),
    "C8": scenarios.stale_category_map,
    "C9": scenarios.derived_from_another_detection,
    "G1": scenarios.duplicate_classifications,
    "G2": scenarios.score_is_not_the_max,
    "G3": scenarios.taxon_is_not_the_top_label,
    "G4": lambda station: scenarios.masked_classification(station, demoted=False)[0],
    "G5": scenarios.terminal_binary_classification,
    "G6": scenarios.improbable_score,
}


def ids(rows) -> set[int]:
    return {row.pk for row in (rows if isinstance(rows, (list, tuple)) else [rows])}


def classification(station):
    """The terminal classification of a healthy occurrence's detection."""
    return Classification.objects.get(detection__occurrence=f.OccurrenceFactory(event__deployment=station))


def values(*rows):
    return list(Classification.objects.filter(pk__in=ids(list(rows))).order_by("pk").values())


@for_each_rule(PLANTED, "scope")
def test_classification_rule_is_scoped_by_the_captures_project_in_check_and_repair(invariants, rule_id, plant):
    invariants.assert_scoped(rule_id, plant)


@for_each_rule(PLANTED)
def test_classification_rule_check_writes_nothing(invariants, rule_id, plant):
    invariants.assert_check_writes_nothing(rule_id, plant)


@pytest.mark.covers("S1", "planted", "near_miss", "scope")
def test_s1_orphans_have_no_project_so_only_the_noproject_case_reports_them(invariants):
    mine, unassigned = f.DeploymentFactory(), f.DeploymentFactory(project=None)
    orphan = scenarios.orphaned_classification(mine)
    attached = classification(unassigned)  # no project either, but it has a detection
    classification(mine)
    before = invariants.snapshot()

    assert invariants.violators("S1", project=mine.project) == set()
    outcome = invariants.check("S1", project=NO_PROJECT)
    assert (outcome.status, set(outcome.sample), outcome.checked) == ("failed", {orphan.pk}, 2)
    assert attached.pk not in outcome.sample
    assert invariants.snapshot() == before
    assert RULES["S1"].repair_func is None


@pytest.mark.covers("S2", "planted")
def test_s2_flags_classifications_without_a_taxon_or_an_algorithm(invariants):
    station = f.DeploymentFactory()
    wrong = {scenarios.classification_without(station, field).pk for field in ("taxon", "algorithm")}
    both = scenarios.classification_without(station, "taxon")
    Classification.objects.filter(pk=both.pk).update(algorithm=None)
    classification(station)

    assert invariants.violators("S2", project=station.project) == wrong | {both.pk}


@pytest.mark.covers("S2", "near_miss")
def test_s2_leaves_classifications_that_name_a_taxon_and_an_algorithm(invariants):
    station = f.DeploymentFactory()
    near_misses = scenarios.classifications_with_a_taxon_and_an_algorithm(station)
    wrong = scenarios.classification_without(station, "algorithm")

    assert invariants.violators("S2") == {wrong.pk}
    assert invariants.violators("S1", project=NO_PROJECT) == {near_misses[0].pk}  # S1's, not S2's


@pytest.mark.covers("C8", "planted", "near_miss")
def test_c8_flags_a_missing_or_other_category_map_when_the_algorithm_has_one(invariants):
    station = f.DeploymentFactory()
    wrong = {scenarios.stale_category_map(station).pk, scenarios.stale_category_map(station, missing=True).pk}
    scenarios.mapped_classification_of_an_unmapped_algorithm(station)  # near-miss: nothing to copy
    scenarios.scored_classification(station)
    classification(station)  # no map anywhere

    assert invariants.violators("C8", project=station.project) == wrong


@pytest.mark.covers("C8", "repair")
def test_c8_repair_copies_the_algorithms_map_onto_exactly_the_violators(invariants):
    station = f.DeploymentFactory()
    stale, missing = scenarios.stale_category_map(station), scenarios.stale_category_map(station, missing=True)
    near_miss = scenarios.mapped_classification_of_an_unmapped_algorithm(station)
    healthy = scenarios.scored_classification(station)
    before = values(near_miss, healthy)

    outcome = invariants.repair("C8", project=station.project)

    assert (outcome.status, outcome.fixed) == ("repaired", 2)
    for row in (stale, missing):
        row.refresh_from_db()
        assert row.category_map_id == row.algorithm.category_map_id is not None
    assert values(near_miss, healthy) == before
    assert invariants.repair("C8", project=station.project).fixed == 0  # idempotent


@pytest.mark.covers("C9", "planted", "near_miss")
def test_c9_flags_derived_classifications_of_another_detection(invariants):
    station = f.DeploymentFactory()
    stray = scenarios.derived_from_another_detection(station)
    scenarios.masked_classification(station)  # near-miss: derived on its source's detection

    assert invariants.violators("C9", project=station.project) == {stray.pk}


@pytest.mark.covers("G1", "planted", "near_miss")
def test_g1_flags_every_later_copy_and_keeps_the_oldest(invariants):
    station = f.DeploymentFactory()
    copies = scenarios.duplicate_classifications(station, copies=2)
    scenarios.rescored_classification(station)  # near-miss: another score
    elsewhere = classification(station)  # near-miss: the same result on another detection
    f.ClassificationFactory(
        detection=classification(station).detection,
        taxon=elsewhere.taxon,
        algorithm=elsewhere.algorithm,
        score=elsewhere.score,
    )
    orphans = [scenarios.orphaned_classification(station) for _ in range(2)]  # S1's, never grouped together
    Classification.objects.filter(pk__in=ids(orphans)).update(taxon=orphans[0].taxon, algorithm=orphans[0].algorithm)

    assert invariants.violators("G1", project=station.project) == ids(copies)
    assert invariants.violators("G1", project=NO_PROJECT) == set()


@pytest.mark.covers("G1", "planted")
def test_g1_the_oldest_is_by_created_at_then_id(invariants):
    station = f.DeploymentFactory()
    first, second = scenarios.duplicate_classifications(station, copies=2)
    original = Classification.objects.filter(detection=first.detection).exclude(pk__in=[first.pk, second.pk]).get()
    Classification.objects.filter(pk=original.pk).update(created_at=second.created_at)  # saved with the copies
    Classification.objects.filter(pk=first.pk).update(created_at=original.created_at.replace(year=2000))

    assert invariants.violators("G1", project=station.project) == {original.pk, second.pk}


@pytest.mark.covers("G2", "planted", "near_miss")
def test_g2_flags_a_score_that_is_not_the_max_and_arrays_of_another_length(invariants):
    station = f.DeploymentFactory()
    wrong = {
        scenarios.score_is_not_the_max(station).pk,
        scenarios.scores_of_another_length(station).pk,
        scenarios.scores_of_another_length(station, array="logits").pk,
    }
    empty = scenarios.scored_classification(station)
    Classification.objects.filter(pk=empty.pk).update(scores=[], logits=None)  # present but empty: no max
    scenarios.scored_classification(station)
    scenarios.scored_classification(station, mapped=False)  # near-miss: no map to count the labels of
    unmapped = scenarios.scored_classification(station, mapped=False)
    Classification.objects.filter(pk=unmapped.pk).update(logits=[0.5])  # no map: logits cannot be counted
    classification(station)  # no scores at all

    assert invariants.violators("G2", project=station.project) == wrong | {empty.pk}


@pytest.mark.covers("G3", "planted", "near_miss")
def test_g3_warns_when_the_taxon_is_not_the_top_label(invariants):
    station = f.DeploymentFactory()
    wrong = scenarios.taxon_is_not_the_top_label(station)
    scenarios.scored_classification(station)
    scenarios.scored_classification(station, mapped=False)  # near-miss: no map, no labels
    first_of_a_tie = scenarios.scored_classification(station, scores=(0.4, 0.4, 0.2))
    second_of_a_tie = scenarios.scored_classification(station, scores=(0.4, 0.4, 0.2))
    Classification.objects.filter(pk=second_of_a_tie.pk).update(taxon=scenarios.named_taxon(scenarios.LABELS[1]))
    short = scenarios.scores_of_another_length(station)  # G2's: the top label is still in the map
    classification(station)

    assert first_of_a_tie.taxon.name == scenarios.LABELS[0]
    assert invariants.violators("G3", project=station.project) == {wrong.pk, second_of_a_tie.pk}
    assert short.pk not in invariants.violators("G3", project=station.project)
    assert invariants.check("G3", project=station.project).status == "warned"


@pytest.mark.covers("G4", "planted", "near_miss")
def test_g4_flags_terminal_sources_of_terminal_derived_classifications(invariants):
    station = f.DeploymentFactory()
    source, _ = scenarios.masked_classification(station, demoted=False)
    scenarios.masked_classification(station)  # near-miss: demoted as masking does
    scenarios.masked_classification(station, demoted=False, derived_terminal=False)  # near-miss
    classification(station)

    assert invariants.violators("G4", project=station.project) == {source.pk}


@pytest.mark.covers("G4", "repair")
def test_g4_repair_demotes_exactly_the_sources(invariants):
    station = f.DeploymentFactory()
    source, derived = scenarios.masked_classification(station, demoted=False)
    near_miss = scenarios.masked_classification(station, demoted=False, derived_terminal=False)
    healthy = classification(station)
    before = values(derived, *near_miss, healthy)

    outcome = invariants.repair("G4", project=station.project)

    assert (outcome.status, outcome.fixed) == ("repaired", 1)
    source.refresh_from_db()
    assert source.terminal is False
    assert values(derived, *near_miss, healthy) == before
    assert invariants.repair("G4", project=station.project).fixed == 0  # idempotent


@pytest.mark.covers("G5", "planted", "near_miss")
def test_g5_flags_terminal_binary_moth_classifications_in_any_case(invariants):
    station = f.DeploymentFactory()
    wrong = {scenarios.terminal_binary_classification(station, name).pk for name in ("Moth", "NONMOTH", "non-moth")}
    scenarios.terminal_binary_classification(station, "Non-Moth", terminal=False)  # near-miss: demoted
    scenarios.terminal_binary_classification(station, "Mothra")  # near-miss: not the binary label
    classification(station)

    assert invariants.violators("G5", project=station.project) == wrong


@pytest.mark.covers("G5", "repair")
def test_g5_repair_demotes_exactly_the_binary_classifications(invariants):
    station = f.DeploymentFactory()
    wrong = [scenarios.terminal_binary_classification(station, name) for name in ("moth", "Nonmoth")]
    mothra = scenarios.terminal_binary_classification(station, "Mothra")
    healthy = classification(station)
    before = values(mothra, healthy)

    outcome = invariants.repair("G5", project=station.project)

    assert (outcome.status, outcome.fixed) == ("repaired", 2)
    assert not Classification.objects.filter(pk__in=ids(wrong), terminal=True).exists()
    assert values(mothra, healthy) == before
    assert invariants.repair("G5", project=station.project).fixed == 0  # idempotent


@pytest.mark.covers("G6", "planted", "near_miss")
def test_g6_flags_scores_outside_zero_to_one(invariants):
    station = f.DeploymentFactory()
    wrong = {scenarios.improbable_score(station, score).pk for score in (1.2, -0.1, float("nan"))}
    for score in (0.0, 1.0, None):  # near-misses (a NULL score is not checked here)
        scenarios.improbable_score(station, score)

    assert invariants.violators("G6", project=station.project) == wrong
