"""S6/S6b (capture and deployment have a project), C1 (capture project = deployment project), C6 (capture in
the right event), C11 (collections hold their project's captures, one row per capture)."""

import pytest

from antenna_invariants.mirror.models import CollectionImage, SourceImage
from antenna_invariants.rules import RULES
from antenna_invariants.scope import NO_PROJECT
from fixtures import factories as f
from fixtures.scenarios import captures as scenarios


@pytest.mark.covers("S6", "planted")
def test_s6_flags_captures_without_deployment_or_project(invariants):
    station = f.DeploymentFactory()
    orphan = scenarios.capture_of_a_deleted_deployment(station)
    unassigned = scenarios.capture_without_project(station)
    healthy = scenarios.capture(station)

    assert invariants.violators("S6", project=station.project) == {orphan.pk}
    assert invariants.violators("S6", project=NO_PROJECT) == {unassigned.pk}
    assert healthy.pk not in invariants.violators("S6")


@pytest.mark.covers("S6", "scope")
def test_s6_respects_project_scope(invariants):
    mine, other = f.DeploymentFactory(), f.DeploymentFactory()
    orphan = scenarios.capture_of_a_deleted_deployment(mine)
    scenarios.capture_of_a_deleted_deployment(other)

    assert invariants.violators("S6", project=mine.project) == {orphan.pk}


@pytest.mark.covers("S6", "near_miss")
def test_s6_leaves_captures_that_have_a_deployment_and_a_project(invariants):
    station = f.DeploymentFactory()
    near_misses = scenarios.captures_with_a_deployment_and_a_project(station)
    orphan = scenarios.capture_of_a_deleted_deployment(station)

    assert invariants.violators("S6") == {orphan.pk}
    assert invariants.violators("C1", project=station.project) == {near_misses[0].pk}  # another rule's, not S6's


@pytest.mark.covers("S6b", "planted", "scope")
def test_s6b_flags_deployments_without_project_in_the_no_project_case(invariants):
    station = f.DeploymentFactory()
    loose = scenarios.deployment_without_project()

    assert invariants.violators("S6b", project=NO_PROJECT) == {loose.pk}
    assert invariants.violators("S6b", project=station.project) == set()


def test_s6_and_s6b_are_report_only_and_check_writes_nothing(invariants):
    station = f.DeploymentFactory()
    scenarios.capture_of_a_deleted_deployment(station)
    scenarios.deployment_without_project()
    before = invariants.snapshot()

    assert invariants.check("S6", project=station.project).status == "failed"
    assert invariants.check("S6b", project=NO_PROJECT).violations == 1
    assert invariants.snapshot() == before
    assert RULES["S6"].repair_func is None
    assert RULES["S6b"].repair_func is None


@pytest.mark.covers("S6b", "near_miss")
def test_s6b_leaves_deployments_that_have_a_project(invariants):
    station = f.DeploymentFactory()
    near_misses = scenarios.deployments_with_a_project(station)
    loose = scenarios.deployment_without_project()

    assert invariants.violators("S6b") == {loose.pk}
    assert not {d.pk for d in [station, *near_misses]} & invariants.violators("S6b")
    assert invariants.violators("S6", project=NO_PROJECT)  # the emptied deployment's capture is S6's


@pytest.mark.covers("C1", "planted", "near_miss")
def test_c1_flags_mismatched_and_missing_projects_only(invariants):
    station, old = f.DeploymentFactory(), f.ProjectFactory()
    left = scenarios.capture_left_in_old_project(station, old)
    unassigned = scenarios.capture_without_project(station)
    scenarios.capture_of_a_deleted_deployment(station)  # no deployment: S6's, not C1's
    healthy = scenarios.capture(station)

    assert invariants.violators("C1", project=old) == {left.pk}
    assert invariants.violators("C1", project=NO_PROJECT) == {unassigned.pk}
    assert invariants.violators("C1", project=station.project) == set()
    assert healthy.pk not in invariants.violators("C1")


@pytest.mark.covers("C1", "repair", "scope")
def test_c1_repair_copies_the_deployment_project_in_scope_only(invariants):
    station, other, old = f.DeploymentFactory(), f.DeploymentFactory(), f.ProjectFactory()
    left = scenarios.capture_left_in_old_project(station, old)
    theirs = scenarios.capture_without_project(other)
    healthy = scenarios.capture(station)
    before = SourceImage.objects.filter(pk=healthy.pk).values().get()

    outcome = invariants.repair("C1", project=old)

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("repaired", 1, 0)
    left.refresh_from_db()
    assert left.project_id == station.project_id
    theirs.refresh_from_db()
    assert theirs.project_id is None
    assert invariants.violators("C1", project=NO_PROJECT) == {theirs.pk}
    assert SourceImage.objects.filter(pk=healthy.pk).values().get() == before
    assert invariants.repair("C1", project=old).fixed == 0  # idempotent


def test_c1_repair_never_moves_a_capture_out_of_its_project(invariants):
    loose = scenarios.deployment_without_project()
    owner = f.ProjectFactory()
    capture = scenarios.capture_left_in_old_project(loose, owner)

    outcome = invariants.repair("C1", project=owner)

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("failed", 0, 1)
    capture.refresh_from_db()
    assert capture.project_id == owner.pk


def test_c1_check_mode_writes_nothing(invariants):
    station = f.DeploymentFactory()
    scenarios.capture_without_project(station)
    before = invariants.snapshot()
    assert invariants.check("C1", project=NO_PROJECT).violations == 1
    assert invariants.snapshot() == before


@pytest.mark.covers("C6", "planted", "near_miss")
def test_c6_flags_foreign_events_ungrouped_and_out_of_range_captures(invariants):
    station = f.DeploymentFactory()
    foreign = scenarios.capture_in_another_deployments_event(station)
    ungrouped = scenarios.ungrouped_capture(station)
    outside = scenarios.capture_outside_its_event(station)
    near_misses = [
        scenarios.capture_without_timestamp(station),
        scenarios.capture_at_the_end_of_its_event(station),
        scenarios.capture_of_a_deleted_deployment(station),  # event and capture both lost the deployment
        scenarios.capture(station),
    ]

    violators = invariants.violators("C6", project=station.project)
    assert violators == {foreign.pk, ungrouped.pk, outside.pk}
    assert not {c.pk for c in near_misses} & violators


@pytest.mark.covers("C6", "planted", "near_miss")
def test_c6_flags_a_capture_before_its_event_starts_and_ignores_an_open_end(invariants):
    station = f.DeploymentFactory()
    early = scenarios.capture(station)
    SourceImage.objects.filter(pk=early.pk).update(timestamp=early.event.start.replace(hour=20))
    open_ended = scenarios.capture(station)
    type(open_ended.event).objects.filter(pk=open_ended.event_id).update(end=None)

    assert invariants.violators("C6", project=station.project) == {early.pk}


@pytest.mark.covers("C6", "scope")
def test_c6_respects_project_scope_and_is_report_only(invariants):
    mine, other = f.DeploymentFactory(), f.DeploymentFactory()
    ungrouped = scenarios.ungrouped_capture(mine)
    scenarios.ungrouped_capture(other)
    before = invariants.snapshot()

    assert invariants.violators("C6", project=mine.project) == {ungrouped.pk}
    assert invariants.snapshot() == before
    assert RULES["C6"].repair_func is None
    assert "regroup" in RULES["C6"].hint


def memberships(collection, captures=None):
    """The main_sourceimagecollection_images rows of ``collection`` (of ``captures`` only, when given)."""
    rows = CollectionImage.objects.filter(sourceimagecollection=collection)
    if captures is not None:
        rows = rows.filter(sourceimage__in=captures)
    return set(rows.values_list("pk", flat=True))


@pytest.mark.covers("C11", "planted", "near_miss")
def test_c11_flags_each_foreign_or_projectless_capture_of_a_collection(invariants):
    station = f.DeploymentFactory()
    contaminated = scenarios.collection_with_foreign_captures(station)
    own = contaminated.images.filter(project=station.project)
    only_projectless = f.CollectionFactory(project=station.project, images=[scenarios.capture_without_project(station)])
    clean = scenarios.collection_of_own_captures(station)
    empty = f.CollectionFactory(project=station.project)
    shared = scenarios.capture(station)  # in two collections: foreign to one of them only
    elsewhere = f.CollectionFactory(project=f.ProjectFactory(), images=[shared])
    f.CollectionFactory(project=station.project, images=[shared])

    foreign = memberships(contaminated) - memberships(contaminated, own)
    assert len(foreign) == 2  # another project's capture and a capture without a project: one row each
    assert invariants.violators("C11", project=station.project) == foreign | memberships(only_projectless)
    assert invariants.violators("C11", project=elsewhere.project) == memberships(elsewhere)
    assert not (memberships(clean) | memberships(contaminated, own)) & invariants.violators("C11")
    assert not memberships(empty)


def test_c11_names_the_collection_and_the_capture_of_each_row(invariants):
    from antenna_invariants import reporting, samples

    station = f.DeploymentFactory()
    foreign = scenarios.capture(f.DeploymentFactory())
    collection = f.CollectionFactory(project=station.project, images=[foreign])
    outcome = invariants.check("C11", project=station.project)
    outcome.sample_rows = samples.sample_rows(RULES["C11"], outcome.sample, ())

    (row,) = memberships(collection)
    assert outcome.sample_rows == [{"id": row, "sourceimagecollection_id": collection.pk, "sourceimage_id": foreign.pk}]
    message = reporting.failure_message(RULES["C11"], outcome.as_dict())
    assert message.startswith("1 violating collection_images of 1 checked")
    assert f"ids: {row} (sourceimagecollection_id {collection.pk}, sourceimage_id {foreign.pk})" in message


@pytest.mark.covers("C11", "scope")
def test_c11_respects_project_scope_and_is_report_only(invariants):
    mine, other = f.DeploymentFactory(), f.DeploymentFactory()
    contaminated = scenarios.collection_with_foreign_captures(mine, foreign_deployment=other)
    theirs = scenarios.collection_with_foreign_captures(other, foreign_deployment=mine)
    before = invariants.snapshot()

    assert invariants.violators("C11", project=mine.project) == memberships(contaminated) - memberships(
        contaminated, contaminated.images.filter(project=mine.project))
    assert invariants.violators("C11", project=other.project) == memberships(theirs) - memberships(
        theirs, theirs.images.filter(project=other.project))
    assert invariants.snapshot() == before
    assert RULES["C11"].repair_func is None


# --- C12: plausible timestamps; W1: a detected capture has its size ---------------------------------------


@pytest.mark.covers("C12", "planted", "near_miss")
def test_c12_flags_implausible_timestamps_and_none_of_the_near_misses(invariants):
    station = f.DeploymentFactory()
    planted = [scenarios.capture_without_timestamp(station), scenarios.capture_from_1969(station),
               scenarios.capture_from_the_future(station), scenarios.upload_stamped_with_its_upload_time(station)]
    near_misses = scenarios.plausible_recent_captures(station) + [scenarios.capture(station)]

    assert invariants.violators("C12", project=station.project) == {c.pk for c in planted}
    assert not {c.pk for c in near_misses} & invariants.violators("C12", project=station.project)


@pytest.mark.covers("C12", "scope")
def test_c12_respects_scope_and_check_writes_nothing(invariants):
    invariants.assert_scoped("C12", scenarios.capture_from_1969)
    invariants.assert_check_writes_nothing("C12", scenarios.upload_stamped_with_its_upload_time)


@pytest.mark.covers("W1", "planted", "near_miss")
def test_w1_flags_detected_captures_without_a_size(invariants):
    station = f.DeploymentFactory()
    planted = [scenarios.detected_capture_without_size(station), scenarios.capture_with_zero_height(station)]
    near_misses = scenarios.unsized_captures_without_boxes(station)
    healthy = f.OccurrenceFactory(event__deployment=station).detections.get().source_image

    assert invariants.violators("W1", project=station.project) == {c.pk for c in planted}
    assert not {c.pk for c in [*near_misses, healthy]} & invariants.violators("W1")


@pytest.mark.covers("W1", "scope")
def test_w1_respects_scope_and_check_writes_nothing(invariants):
    invariants.assert_scoped("W1", scenarios.detected_capture_without_size)
    invariants.assert_check_writes_nothing("W1", scenarios.capture_with_zero_height)
