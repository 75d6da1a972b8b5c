"""Occurrence rules: D1-D6 (determination), F1 (no phantoms), S5 (links present), C3-C5 (links agree)."""


import pytest
from django.db import transaction
from plugins.contract import for_each_rule

from antenna_invariants.journal import read
from antenna_invariants.mirror.models import Classification, Detection, Identification, Occurrence, SourceImage
from antenna_invariants.rules import RULES
from antenna_invariants.scope import NO_PROJECT
from antenna_invariants.undo import undo
from fixtures import factories as f
from fixtures.scenarios import detections, identifications
from fixtures.scenarios import occurrences as scenarios


@pytest.mark.covers("D1", "planted", "near_miss")
def test_d1_flags_partial_saves_and_identified_occurrences_only(invariants):
    station = f.DeploymentFactory()
    partial = scenarios.partial_save(station)
    identified = scenarios.identified_but_undetermined(station)
    healthy = f.OccurrenceFactory(event__deployment=station)
    near_misses = [scenarios.unclassifiable_occurrence(station), scenarios.human_determined(station)]

    assert invariants.violators("D1", project=station.project) == {partial.pk, identified.pk}
    assert healthy.pk not in invariants.violators("D1", project=station.project)
    assert not {o.pk for o in near_misses} & invariants.violators("D1", project=station.project)


@pytest.mark.covers("D1", "near_miss")
def test_d1_ignores_classifications_on_null_markers(invariants):
    station = f.DeploymentFactory()
    occurrence = f.OccurrenceFactory(event__deployment=station, phantom=True)
    marker = occurrence.detections.get()
    f.ClassificationFactory(detection=marker)

    assert occurrence.pk not in invariants.violators("D1", project=station.project)


@pytest.mark.covers("D1", "scope")
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


@pytest.mark.covers("D1", "repair")
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


@pytest.mark.covers("F1", "planted", "near_miss")
def test_f1_flags_phantoms_not_empty_captures(invariants):
    station = f.DeploymentFactory()
    phantom = scenarios.phantom_occurrence(station)
    bare = f.OccurrenceFactory(event__deployment=station, detections=0)
    detections.empty_capture(station)
    healthy = f.OccurrenceFactory(event__deployment=station)
    scenarios.partial_save(station)  # has a real detection: a D1 problem, never an F1 one

    assert invariants.violators("F1", project=station.project) == {phantom.pk, bare.pk}
    assert healthy.pk not in invariants.violators("F1", project=station.project)


@pytest.mark.covers("F1", "repair")
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
    assert outcome.journaled == {  # the cascade breakdown, reported beside the count
        "update main_detection": 1, "update main_identification": 1,  # links nulled (Django's SET_NULL)
        "delete main_identification": 1, "delete main_occurrence": 1,
    }
    assert not Occurrence.objects.filter(pk=phantom.pk).exists()
    assert not Identification.objects.filter(pk=identification.pk).exists()
    assert Detection.objects.get(pk=marker.pk).occurrence_id is None
    assert Identification.objects.get(pk=agreeing.pk).agreed_with_identification_id is None
    assert Occurrence.objects.filter(pk__in=[theirs.pk, healthy.pk]).count() == 2

    lines = [meta for _, meta, _ in read(invariants.journal.path).lines]
    deleted = {(e["table"], e["pk"]) for e in lines if e["op"] == "delete"}
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
    undo(invariants.journal.path)

    assert invariants.snapshot() == before
    assert Identification.objects.get(pk=agreeing.pk).agreed_with_identification_id == identification.pk


@pytest.mark.covers("F2", "planted", "near_miss")
def test_f2_warns_on_occurrences_with_more_than_one_real_detection(invariants):
    station = f.DeploymentFactory()
    grouped = [scenarios.two_real_detections(station), f.OccurrenceFactory(event__deployment=station, detections=3)]
    one_and_a_marker = f.OccurrenceFactory(event__deployment=station)
    marker = f.DetectionFactory(source_image=f.SourceImageFactory(event=one_and_a_marker.event), null_marker=True)
    Detection.objects.filter(pk=marker.pk).update(occurrence=one_and_a_marker)
    near_misses = [
        one_and_a_marker,  # a null marker is not a detection of the occurrence
        f.OccurrenceFactory(event__deployment=station),
        scenarios.phantom_occurrence(station),  # no real detection: F1's
        f.OccurrenceFactory(event__deployment=station, detections=0),
    ]

    outcome = invariants.check("F2", project=station.project)
    assert set(outcome.sample) == {o.pk for o in grouped}
    assert outcome.status == "warned"
    assert RULES["F2"].severity == "warn"
    assert not {o.pk for o in near_misses} & set(outcome.sample)
    assert RULES["F2"].repair_func is None
    assert RULES["F2"].hint


# --- S5, C3, C4, C5: links ---------------------------------------------------------------------------------------

@pytest.mark.covers("S5", "planted", "near_miss")
def test_s5_flags_missing_links_only(invariants):
    station = f.DeploymentFactory()
    flagged = [
        scenarios.unlinked_occurrence(station, "deployment"),
        scenarios.unlinked_occurrence(station, "event"),
        scenarios.deployment_deleted(station),
    ]
    healthy = f.OccurrenceFactory(event__deployment=station)
    bare = f.OccurrenceFactory(event__deployment=station, detections=0)  # no detection: F1's, not S5's
    unlinked = scenarios.unlinked_occurrence(station)  # no project: the -noproject case

    assert invariants.violators("S5", project=station.project) == {o.pk for o in flagged}
    assert invariants.violators("S5", project=NO_PROJECT) == {unlinked.pk}
    assert not {healthy.pk, bare.pk} & invariants.violators("S5", project=station.project)


@pytest.mark.covers("S5", "repair")
def test_s5_repair_derives_the_links_from_agreeing_captures(invariants):
    station = f.DeploymentFactory()
    no_home = scenarios.unlinked_occurrence(station, "deployment", "event")
    no_event = scenarios.unlinked_occurrence(station, "event", detections=2)
    unfixable = [
        scenarios.deployment_deleted(station),  # the captures lost their deployment too
        scenarios.capture_moved_to_another_deployment(station),  # detections disagree...
        f.OccurrenceFactory(event__deployment=station, detections=0),  # ...or there are none
    ]
    Occurrence.objects.filter(pk__in=[o.pk for o in unfixable[1:]]).update(deployment=None, event=None)
    healthy = f.OccurrenceFactory(event__deployment=station)
    before = Occurrence.objects.filter(pk=healthy.pk).values().get()

    outcome = invariants.repair("S5", project=station.project)

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("failed", 2, 3)
    assert invariants.violators("S5", project=station.project) == {o.pk for o in unfixable}
    for occurrence in (no_home, no_event):
        occurrence.refresh_from_db()
        capture = occurrence.detections.order_by("pk").first().source_image
        links = (occurrence.project_id, occurrence.deployment_id, occurrence.event_id)
        assert links == (station.project_id, station.pk, capture.event_id)
    assert Occurrence.objects.filter(pk=healthy.pk).values().get() == before
    assert invariants.repair("S5", project=station.project).fixed == 0  # idempotent


def test_s5_repair_takes_the_project_from_the_deployment_and_fills_what_it_can(invariants):
    station, unassigned = f.DeploymentFactory(), f.DeploymentFactory(project=None)
    unlinked = scenarios.unlinked_occurrence(station)
    half = scenarios.unlinked_occurrence(unassigned, "event")  # the event can be filled, the project cannot

    outcome = invariants.repair("S5", project=NO_PROJECT)

    assert (outcome.fixed, outcome.unfixable) == (2, 1)
    unlinked.refresh_from_db()
    assert (unlinked.project_id, unlinked.deployment_id) == (station.project_id, station.pk)
    half.refresh_from_db()
    assert (half.project_id, half.event_id) == (None, half.detections.get().source_image.event_id)
    assert invariants.violators("S5", project=NO_PROJECT) == {half.pk}
    assert invariants.repair("S5", project=NO_PROJECT).fixed == 0  # idempotent


@pytest.mark.covers("C3", "planted", "near_miss")
def test_c3_flags_occurrences_left_in_the_old_project(invariants):
    station = f.DeploymentFactory()
    moved = scenarios.deployment_moved_without_its_occurrences(station)
    healthy = f.OccurrenceFactory(event__deployment=station)
    homeless = scenarios.unlinked_occurrence(station, "deployment")  # S5's business
    unassigned = f.OccurrenceFactory(event__deployment=f.DeploymentFactory(project=None))  # NULL = NULL
    legacy = scenarios.unlinked_occurrence(station, "project")  # NULL project, deployment has one

    assert invariants.violators("C3", project=station.project) == {moved.pk}
    assert invariants.violators("C3", project=NO_PROJECT) == {legacy.pk}
    assert not {healthy.pk, homeless.pk, unassigned.pk} & invariants.violators("C3", project=station.project)


@pytest.mark.covers("C3", "repair")
def test_c3_repair_copies_the_deployment_project(invariants):
    station = f.DeploymentFactory()
    moved = scenarios.deployment_moved_without_its_occurrences(station)
    healthy = f.OccurrenceFactory(event__deployment=station)

    outcome = invariants.repair("C3", project=station.project)

    assert (outcome.status, outcome.fixed) == ("repaired", 1)
    moved.refresh_from_db()
    assert moved.project_id == moved.deployment.project_id != station.project_id
    healthy.refresh_from_db()
    assert healthy.project_id == station.project_id
    assert invariants.repair("C3", project=station.project).fixed == 0  # idempotent
    assert invariants.violators("C3", project=moved.project_id) == set()


@pytest.mark.covers("C4", "planted", "near_miss")
def test_c4_flags_detections_outside_the_occurrence_deployment(invariants):
    station = f.DeploymentFactory()
    straddling = scenarios.capture_moved_to_another_deployment(station)
    homeless_straddling = scenarios.capture_moved_to_another_deployment(station)
    Occurrence.objects.filter(pk=homeless_straddling.pk).update(deployment=None)
    near_misses = [
        scenarios.spanning_two_events(station),  # one deployment, two events
        scenarios.unlinked_occurrence(station, "deployment", detections=2),  # agreeing: S5 can fix it
        f.OccurrenceFactory(event__deployment=station, detections=0),
        f.OccurrenceFactory(event__deployment=station, detections=3),
    ]

    assert invariants.violators("C4", project=station.project) == {straddling.pk, homeless_straddling.pk}
    assert not {o.pk for o in near_misses} & invariants.violators("C4", project=station.project)
    assert RULES["C4"].repair_func is None
    assert RULES["C4"].hint


@pytest.mark.covers("C4", "planted")
def test_c4_counts_a_null_marker_on_another_deployment(invariants):
    station = f.DeploymentFactory()
    occurrence = f.OccurrenceFactory(event__deployment=station)
    elsewhere = f.SourceImageFactory(event__deployment=f.DeploymentFactory(project=station.project))
    f.DetectionFactory(source_image=elsewhere, null_marker=True, occurrence=occurrence)

    assert invariants.violators("C4", project=station.project) == {occurrence.pk}


@pytest.mark.covers("C5", "planted", "near_miss")
def test_c5_flags_occurrences_whose_event_is_not_their_first_capture_event(invariants):
    station = f.DeploymentFactory()
    regrouped = scenarios.regrouped_without_realignment(station)
    no_event = scenarios.unlinked_occurrence(station, "event")
    bare = f.OccurrenceFactory(event__deployment=station, detections=0)  # NULL expected, event set
    healthy = f.OccurrenceFactory(event__deployment=station)
    spanning = scenarios.spanning_two_events(station)

    assert invariants.violators("C5", project=station.project) == {regrouped.pk, no_event.pk, bare.pk}
    assert not {healthy.pk, spanning.pk} & invariants.violators("C5", project=station.project)


@pytest.mark.covers("C5", "planted", "near_miss")
def test_c5_orders_by_capture_timestamp_then_capture_id(invariants):
    station = f.DeploymentFactory()
    occurrence = f.OccurrenceFactory(event__deployment=station, detections=2)
    first, second = (d.source_image for d in occurrence.detections.order_by("pk"))
    later = scenarios.move_into_new_event(station, [occurrence.detections.order_by("pk").first()])
    assert invariants.violators("C5", project=station.project) == set()  # the earliest capture is still first

    SourceImage.objects.filter(pk=first.pk).update(timestamp=second.timestamp)  # a tie: the lower capture id wins
    assert invariants.violators("C5", project=station.project) == {occurrence.pk}
    invariants.repair("C5", project=station.project)
    occurrence.refresh_from_db()
    assert occurrence.event_id == later.pk


@pytest.mark.covers("C5", "repair")
def test_c5_repair_realigns_the_event(invariants):
    station, other = f.DeploymentFactory(), f.DeploymentFactory()
    regrouped = scenarios.regrouped_without_realignment(station)
    bare = f.OccurrenceFactory(event__deployment=station, detections=0)
    theirs = scenarios.regrouped_without_realignment(other)
    healthy = f.OccurrenceFactory(event__deployment=station)
    before = Occurrence.objects.filter(pk__in=[healthy.pk, theirs.pk]).values()

    outcome = invariants.repair("C5", project=station.project)

    assert (outcome.status, outcome.fixed) == ("repaired", 2)
    regrouped.refresh_from_db()
    assert regrouped.event_id == regrouped.detections.get().source_image.event_id
    bare.refresh_from_db()
    assert bare.event_id is None
    assert list(Occurrence.objects.filter(pk__in=[healthy.pk, theirs.pk]).values()) == list(before)
    assert invariants.repair("C5", project=station.project).fixed == 0  # idempotent


# --- D2-D6: the determination and its score ------------------------------------------------------------------------


@pytest.mark.covers("D2", "planted", "near_miss")
def test_d2_flags_every_occurrence_whose_taxon_is_not_the_expected_one(invariants):
    station = f.DeploymentFactory()
    withdrawn = scenarios.withdrawn_but_still_determined(station)
    masked = scenarios.masked_but_not_redetermined(station)
    partial = scenarios.partial_save(station)  # no determination although there is evidence: also D1
    unsupported = scenarios.classifications_deleted(station)  # a determination without evidence: also D5
    near_misses = [
        f.OccurrenceFactory(event__deployment=station),
        scenarios.human_determined(station),
        scenarios.identified_unclassifiable(station),
        scenarios.stale_score(station),  # right taxon, wrong score: D3
        scenarios.zero_score_never_written(station),
        scenarios.unclassifiable_occurrence(station),  # nothing to determine from, and nothing determined
        identifications.identified_taxon_deleted(station).occurrence,  # blocked: S7
    ]
    blocked = scenarios.human_determined(station)
    f.IdentificationFactory(occurrence=blocked, taxon=None)  # blocked with a determination still set

    expected = {withdrawn.pk, masked.pk, partial.pk, unsupported.pk}
    assert invariants.violators("D2", project=station.project) == expected
    assert not {o.pk for o in [*near_misses, blocked]} & invariants.violators("D2", project=station.project)
    assert invariants.violators("D2", project=station.project, occurrences=[partial]) == {partial.pk}


@pytest.mark.covers("D2", "repair")
def test_d2_repair_writes_the_expected_taxon_and_score(invariants):
    station = f.DeploymentFactory()
    withdrawn = scenarios.withdrawn_but_still_determined(station)
    masked = scenarios.masked_but_not_redetermined(station, score=0.6)
    partial = scenarios.partial_save(station, detections__score=0.55)
    unsupported = scenarios.classifications_deleted(station)  # D5's: a person decides whether to clear it
    stale = scenarios.stale_score(station)  # D3's: left alone by D2's repair
    before = Occurrence.objects.filter(pk__in=[stale.pk, unsupported.pk]).order_by("pk").values()
    before = list(before)

    outcome = invariants.repair("D2", project=station.project)

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("failed", 3, 1)
    machine = withdrawn.detections.get().classifications.get()
    withdrawn.refresh_from_db()
    assert (withdrawn.determination_id, withdrawn.determination_score) == (machine.taxon_id, 0.8)
    masking = Classification.objects.get(detection__occurrence=masked, terminal=True)
    masked.refresh_from_db()
    assert (masked.determination_id, masked.determination_score) == (masking.taxon_id, 0.6)
    partial.refresh_from_db()
    assert partial.determination_score == 0.55
    assert list(Occurrence.objects.filter(pk__in=[stale.pk, unsupported.pk]).order_by("pk").values()) == before
    assert invariants.violators("D2", project=station.project) == {unsupported.pk}
    assert invariants.repair("D2", project=station.project).fixed == 0  # idempotent


@pytest.mark.covers("D3", "planted", "near_miss")
def test_d3_flags_every_occurrence_whose_score_is_not_the_expected_one(invariants):
    station = f.DeploymentFactory()
    stale = scenarios.stale_score(station)
    kept = scenarios.agreement_deleted_score_stays(station)
    masked = scenarios.masked_but_not_redetermined(station)  # wrong taxon, and so the wrong score: also D2
    partial = scenarios.partial_save(station)  # no score where 0.8 is expected: also D1
    outscored = scenarios.zero_score_outscored(station)  # NULL where 0.7 is expected: also D4
    unsupported = scenarios.classifications_deleted(station)  # a score without evidence: also D5
    near_misses = [
        f.OccurrenceFactory(event__deployment=station),
        scenarios.human_determined(station),  # a person decided: exactly 1.0 over a 0.4 machine score
        scenarios.zero_score(station),  # 0.0 where 0.0 wins
        scenarios.zero_score_never_written(station),  # NULL where 0.0 wins: what Antenna writes
        scenarios.identified_unclassifiable(station),
        scenarios.unclassifiable_occurrence(station),
        identifications.identified_taxon_deleted(station).occurrence,  # blocked: S7
    ]

    expected = {stale.pk, kept.pk, masked.pk, partial.pk, outscored.pk, unsupported.pk}
    assert invariants.violators("D3", project=station.project) == expected
    assert not {o.pk for o in near_misses} & invariants.violators("D3", project=station.project)


@pytest.mark.covers("D3", "repair")
def test_d3_repair_writes_the_expected_pair(invariants):
    station = f.DeploymentFactory()
    stale = scenarios.stale_score(station)
    kept = scenarios.agreement_deleted_score_stays(station)
    masked = scenarios.masked_but_not_redetermined(station, score=0.6)
    unsupported = scenarios.classifications_deleted(station)  # D5's: left as it is
    taxa = {stale.pk: stale.determination_id, kept.pk: kept.determination_id}

    outcome = invariants.repair("D3", project=station.project)

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("failed", 3, 1)
    rows = Occurrence.objects.filter(pk__in=taxa).values_list("pk", "determination_id", "determination_score")
    assert set(rows) == {(stale.pk, taxa[stale.pk], 0.9), (kept.pk, taxa[kept.pk], 0.6)}
    masking = Classification.objects.get(detection__occurrence=masked, terminal=True)
    masked.refresh_from_db()
    assert (masked.determination_id, masked.determination_score) == (masking.taxon_id, 0.6)
    assert invariants.violators("D3", project=station.project) == {unsupported.pk}
    assert invariants.repair("D3", project=station.project).fixed == 0  # idempotent


@pytest.mark.covers("D3", "near_miss")
@pytest.mark.covers("D4", "near_miss")
def test_a_winning_zero_is_written_as_antenna_writes_it(invariants):
    """Antenna writes the score only ``if new_score``: where the winner scored 0.0 it sets the determination
    and leaves the score NULL.  D3 and D4 accept that row, and every determination repair writes it."""
    station = f.DeploymentFactory()
    antenna_wrote = scenarios.zero_score_never_written(station)
    assert Occurrence.objects.get(pk=antenna_wrote.pk).determination_score is None
    assert not {antenna_wrote.pk} & (invariants.violators("D3", project=station.project)
                                     | invariants.violators("D4", project=station.project))
    partial = scenarios.partial_save(station, detections__score=0.0)
    winner = partial.detections.get().classifications.get()
    assert invariants.repair("D1", project=station.project).fixed == 1
    assert Occurrence.objects.filter(pk=partial.pk).values_list("determination_id", "determination_score").get() == (
        winner.taxon_id, None)
    for rule_id in ("D1", "D2", "D3", "D4"):
        assert invariants.violators(rule_id, project=station.project) == set(), rule_id


@pytest.mark.covers("D4", "planted", "near_miss")
def test_d4_flags_a_half_set_pair_and_accepts_a_zero_score(invariants):
    station = f.DeploymentFactory()
    flagged = [
        scenarios.determining_taxon_deleted(station),
        scenarios.zero_score_outscored(station),  # NULL, but the winner now scores 0.7
        identifications.identified_taxon_deleted(station).occurrence,
    ]
    wrong_zero = scenarios.zero_score_never_written(station)  # NULL beside a taxon that is not the 0.0 winner's
    Occurrence.objects.filter(pk=wrong_zero.pk).update(determination=f.TaxonFactory())
    flagged.append(wrong_zero)
    near_misses = [
        scenarios.zero_score(station),  # 0.0 is a score
        scenarios.zero_score_never_written(station),  # the 0.0 winner, left NULL by Antenna
        scenarios.partial_save(station),  # both NULL: D1's
        f.OccurrenceFactory(event__deployment=station),
    ]

    assert invariants.violators("D4", project=station.project) == {o.pk for o in flagged}
    assert not {o.pk for o in near_misses} & invariants.violators("D4", project=station.project)


@pytest.mark.covers("D4", "repair")
def test_d4_repair_recomputes_the_pair(invariants):
    station = f.DeploymentFactory()
    outscored = scenarios.zero_score_outscored(station)
    deleted = scenarios.determining_taxon_deleted(station)  # no evidence left: the stray score goes
    blocked = identifications.identified_taxon_deleted(station).occurrence  # S7's: left alone
    unsupported = scenarios.classifications_deleted(station)  # a determination without evidence: D5's
    Occurrence.objects.filter(pk=unsupported.pk).update(determination_score=None)

    outcome = invariants.repair("D4", project=station.project)

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("failed", 2, 2)
    assert invariants.violators("D4", project=station.project) == {blocked.pk, unsupported.pk}
    outscored.refresh_from_db()
    assert outscored.determination_score == 0.7
    deleted.refresh_from_db()
    assert (deleted.determination_id, deleted.determination_score) == (None, None)
    blocked.refresh_from_db()
    assert (blocked.determination_id, blocked.determination_score) == (None, 1.0)
    assert invariants.repair("D4", project=station.project).fixed == 0  # idempotent


def determinations():
    return sorted(Occurrence.objects.values_list("pk", "determination_id", "determination_score"))


@pytest.mark.parametrize(("first", "second"), [("D1", "D3"), ("D2", "D4"), ("D3", "D2"), ("D4", "D1")])
def test_overlapping_determination_repairs_converge_in_any_order(invariants, first, second):
    station = f.DeploymentFactory()
    scenarios.seed(station)
    identifications.seed(station)
    scenarios.zero_score_outscored(station)
    partial = scenarios.partial_save(station, detections__score=0.0)
    f.ClassificationFactory(detection=partial.detections.get(), score=0.3, terminal=False)

    results = []
    for order in ((first, second), (second, first)):
        savepoint = transaction.savepoint()
        for rule_id in order:
            invariants.repair(rule_id, project=station.project)
        left = {rule_id: invariants.violators(rule_id, project=station.project) for rule_id in ("D1", "D2", "D3", "D4")}
        results.append((determinations(), left))
        transaction.savepoint_rollback(savepoint)
    assert results[0] == results[1]
    assert results[0][0] != determinations()  # the repairs did write


@pytest.mark.covers("D5", "planted", "near_miss")
def test_d5_flags_determinations_without_evidence(invariants):
    station = f.DeploymentFactory()
    deleted = scenarios.classifications_deleted(station)
    withdrawn = scenarios.identified_unclassifiable(station)
    Identification.objects.filter(occurrence=withdrawn).update(withdrawn=True)
    on_a_marker = f.OccurrenceFactory(event__deployment=station, phantom=True)
    marker = on_a_marker.detections.get()
    prediction = f.ClassificationFactory(detection=marker)
    Occurrence.objects.filter(pk=on_a_marker.pk).update(determination=prediction.taxon, determination_score=0.8)
    near_misses = [
        f.OccurrenceFactory(event__deployment=station),
        scenarios.identified_unclassifiable(station),  # a person's identification is evidence
        scenarios.partial_save(station),  # no determination at all
        scenarios.withdrawn_but_still_determined(station),  # wrong, but there is evidence: D2
    ]

    assert invariants.violators("D5", project=station.project) == {deleted.pk, withdrawn.pk, on_a_marker.pk}
    assert not {o.pk for o in near_misses} & invariants.violators("D5", project=station.project)
    assert RULES["D5"].repair_func is None
    assert RULES["D5"].hint


@pytest.mark.covers("D6", "planted", "near_miss")
def test_d6_flags_scores_outside_the_unit_interval(invariants):
    station = f.DeploymentFactory()
    logit, negative = scenarios.logit_as_score(station), scenarios.logit_as_score(station, score=-0.2)
    nan = f.OccurrenceFactory(event__deployment=station)
    Occurrence.objects.filter(pk=nan.pk).update(determination_score=float("nan"))
    near_misses = [
        scenarios.zero_score(station),
        scenarios.human_determined(station),  # exactly 1.0
        scenarios.partial_save(station),  # NULL
    ]

    assert invariants.violators("D6", project=station.project) == {logit.pk, negative.pk, nan.pk}
    assert not {o.pk for o in near_misses} & invariants.violators("D6", project=station.project)
    assert RULES["D6"].repair_func is None
    assert RULES["D6"].hint


# --- every new rule: scope and check mode ----------------------------------------------------------------------

PLANTED = {  # rule -> builds one defect in a deployment and returns the violating occurrence(s)
    "F1": scenarios.phantom_occurrence,
    "S5": lambda station: scenarios.unlinked_occurrence(station, "deployment", "event"),
    "C3": scenarios.deployment_moved_without_its_occurrences,
    "C4": scenarios.capture_moved_to_another_deployment,
    "C5": scenarios.regrouped_without_realignment,
    "D2": scenarios.withdrawn_but_still_determined,
    "D3": scenarios.stale_score,
    "D4": scenarios.zero_score_outscored,
    "F2": scenarios.two_real_detections,
    "D5": scenarios.classifications_deleted,
    "D6": scenarios.logit_as_score,
}


@for_each_rule(PLANTED, "scope")
def test_rule_respects_project_and_occurrence_scope(invariants, rule_id, plant):
    invariants.assert_scoped(rule_id, plant)


@pytest.mark.parametrize("rule_id", sorted(PLANTED))
def test_check_mode_writes_nothing(invariants, rule_id):
    invariants.assert_check_writes_nothing(rule_id, scenarios.seed, identifications.seed)
