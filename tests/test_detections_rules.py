"""Detections and null markers: S3, N1-N9 and C7."""

from datetime import timedelta

import pytest
from django.db.models.functions import Now
from plugins.contract import for_each_rule

from antenna_invariants.journal import read
from antenna_invariants.mirror.models import Classification, Detection, SourceImage
from antenna_invariants.rules import RULES
from antenna_invariants.scope import NO_PROJECT
from fixtures import factories as f
from fixtures.scenarios import detections as scenarios


@pytest.mark.covers("N6", "planted", "near_miss")
def test_n6_flags_orphaned_real_detections_only(invariants):
    station = f.DeploymentFactory()
    orphan = scenarios.orphaned_detection(station)
    scenarios.empty_capture(station)  # a null marker without occurrence is how it should be
    healthy = f.OccurrenceFactory(event__deployment=station).detections.get()

    assert invariants.violators("N6", project=station.project) == {orphan.pk}
    assert healthy.pk not in invariants.violators("N6", project=station.project)


@pytest.mark.covers("N6", "scope")
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


# S3, N1-N5, N7-N9 and C7 ------------------------------------------------------------------------------------

PLANTED = {  # rule -> builds one defect in a deployment and returns the violating row(s)
    "S3": scenarios.detection_without_algorithm,
    "N1": scenarios.null_marker_in_occurrence,
    "N2": scenarios.classified_null_marker,
    "N3": scenarios.repeated_null_markers,
    "N4": scenarios.stale_null_marker,
    "N5": lambda station: scenarios.malformed_bbox(station, []),
    "N5b": lambda station: scenarios.malformed_bbox(station, [300, 300, 100, 100]),
    "N7": scenarios.duplicate_detection,
    "N8": scenarios.uncropped_detection,
    "N9": scenarios.detection_by_a_non_detector,
    "C7": scenarios.processing_time_stamp,
}


def ids(rows) -> set[int]:
    return {row.pk for row in (rows if isinstance(rows, list) else [rows])}


def detection(station):
    """A healthy, classified real detection in its own occurrence."""
    return f.OccurrenceFactory(event__deployment=station).detections.get()


@for_each_rule(PLANTED, "scope")
def test_detection_rule_is_scoped_by_the_captures_project_in_check_and_repair(invariants, rule_id, plant):
    invariants.assert_scoped(rule_id, plant)


@for_each_rule(PLANTED)
def test_detection_rule_check_writes_nothing(invariants, rule_id, plant):
    invariants.assert_check_writes_nothing(rule_id, plant)


@pytest.mark.covers("S3", "planted", "near_miss")
def test_s3_flags_detections_and_null_markers_without_an_algorithm(invariants):
    station = f.DeploymentFactory()
    debris = scenarios.detection_without_algorithm(station)
    orphaned_marker = scenarios.empty_capture(station)
    Detection.objects.filter(pk=orphaned_marker.pk).update(detection_algorithm=None)  # its algorithm was deleted
    detection(station)
    scenarios.empty_capture(station)

    assert invariants.violators("S3", project=station.project) == {debris.pk, orphaned_marker.pk}


@pytest.mark.covers("N1", "planted", "near_miss")
def test_n1_flags_null_markers_that_belong_to_an_occurrence(invariants):
    station = f.DeploymentFactory()
    own_phantom = scenarios.null_marker_in_occurrence(station)
    beside_a_moth = scenarios.null_marker_in_occurrence(station, phantom=False)
    scenarios.empty_capture(station)  # near-miss: a marker with no occurrence is how it should be
    detection(station)

    assert invariants.violators("N1", project=station.project) == {own_phantom.pk, beside_a_moth.pk}


@pytest.mark.covers("N1", "repair")
def test_n1_repair_unlinks_the_markers_and_leaves_the_phantom_to_f1(invariants):
    station = f.DeploymentFactory()
    own_phantom = scenarios.null_marker_in_occurrence(station)
    beside_a_moth = scenarios.null_marker_in_occurrence(station, phantom=False)
    healthy = detection(station)
    before = Detection.objects.filter(pk=healthy.pk).values().get()

    outcome = invariants.repair("N1", project=station.project)

    assert (outcome.status, outcome.fixed) == ("repaired", 2)
    assert not Detection.objects.filter(pk__in=[own_phantom.pk, beside_a_moth.pk], occurrence__isnull=False).exists()
    assert Detection.objects.filter(pk=healthy.pk).values().get() == before
    assert invariants.violators("F1", project=station.project) == {own_phantom.occurrence_id}
    assert invariants.repair("N1", project=station.project).fixed == 0  # idempotent


@pytest.mark.covers("N2", "planted", "near_miss")
def test_n2_flags_classified_null_markers_only(invariants):
    station = f.DeploymentFactory()
    classified = scenarios.classified_null_marker(station)
    scenarios.empty_capture(station)
    detection(station)  # a classified real detection

    assert invariants.violators("N2", project=station.project) == {classified.pk}


@pytest.mark.covers("N3", "planted", "near_miss")
def test_n3_flags_every_null_marker_but_the_first_per_capture_and_algorithm(invariants):
    station = f.DeploymentFactory()
    extras = scenarios.repeated_null_markers(station, extras=2)
    scenarios.null_markers_of_two_algorithms(station)  # near-miss: one marker per algorithm
    scenarios.empty_capture(station)
    detection(station)

    assert invariants.violators("N3", project=station.project) == ids(extras)


@pytest.mark.covers("N3", "planted")
def test_n3_keeps_the_oldest_by_created_at_then_id_and_groups_unknown_algorithms(invariants):
    station = f.DeploymentFactory()
    first = scenarios.empty_capture(station)
    same = dict(source_image=first.source_image, detection_algorithm=first.detection_algorithm, null_marker=True)
    second, third = f.DetectionFactory(**same), f.DetectionFactory(**same)
    Detection.objects.filter(pk=first.pk).update(created_at=second.created_at + timedelta(hours=1))  # saved later
    Detection.objects.filter(pk=third.pk).update(created_at=second.created_at)  # a tie: the lower id is older
    unknown = scenarios.null_markers_of_two_algorithms(station)
    Detection.objects.filter(pk__in=ids(unknown)).update(detection_algorithm=None)  # both algorithms deleted

    assert invariants.violators("N3", project=station.project) == {first.pk, third.pk, max(ids(unknown))}


@pytest.mark.covers("N3", "repair")
def test_n3_repair_journals_and_deletes_exactly_the_extras(invariants):
    station = f.DeploymentFactory()
    extras = scenarios.repeated_null_markers(station, extras=2)
    kept = Detection.objects.filter(source_image=extras[0].source_image).exclude(pk__in=ids(extras)).get()
    misplaced = f.ClassificationFactory(detection=extras[0])  # an N2 row on an extra: unlinked, not deleted
    near_misses = scenarios.null_markers_of_two_algorithms(station)

    outcome = invariants.repair("N3", project=station.project)

    assert (outcome.status, outcome.fixed) == ("repaired", 2)
    assert not Detection.objects.filter(pk__in=ids(extras)).exists()
    assert Detection.objects.filter(pk__in={kept.pk} | ids(near_misses)).count() == 3
    assert Classification.objects.get(pk=misplaced.pk).detection_id is None
    lines = [meta for _, meta, _ in read(invariants.journal.path).lines]
    assert {(e["table"], e["pk"]) for e in lines if e["op"] == "delete"} == {
        ("main_detection", pk) for pk in ids(extras)
    }
    assert invariants.repair("N3", project=station.project).fixed == 0  # idempotent


@pytest.mark.covers("N4", "planted", "near_miss")
def test_n4_warns_about_a_null_marker_beside_a_real_detection_of_its_algorithm(invariants):
    station = f.DeploymentFactory()
    stale = scenarios.stale_null_marker(station)
    scenarios.null_marker_beside_another_algorithms_detection(station)  # near-miss
    scenarios.empty_capture(station)
    unknown = scenarios.stale_null_marker(station)
    Detection.objects.filter(source_image=unknown.source_image).update(detection_algorithm=None)  # S3's

    assert invariants.violators("N4", project=station.project) == {stale.pk}
    assert invariants.check("N4", project=station.project).status == "warned"


@pytest.mark.parametrize(
    "bbox",
    [[], scenarios.JSON_NULL, {"x": 1, "y": 2, "w": 3, "h": 4}, "100,120,260,300", 7, [1, 2, 3], [1, 2, 3, 4, 5],
     [1, 2, 3, "4"], [1, 2, 3, None], [[1, 2], [3, 4]]],
    ids=["empty", "json-null", "object", "string", "number", "three", "five", "text-item", "null-item", "pairs"],
)
@pytest.mark.covers("N5", "planted")
def test_n5_flags_a_bbox_that_is_not_four_numbers(invariants, bbox):
    station = f.DeploymentFactory()
    bad = scenarios.malformed_bbox(station, bbox)
    detection(station)

    assert Detection.objects.filter(pk=bad.pk, bbox__isnull=False).exists()  # real, as far as Antenna knows
    assert invariants.violators("N5", project=station.project) == {bad.pk}


@pytest.mark.covers("N5", "near_miss")
def test_n5_accepts_any_four_numbers_and_ignores_null_markers(invariants):
    station = f.DeploymentFactory()
    scenarios.malformed_bbox(station, [1.5, 2, 30.25, 40])
    scenarios.malformed_bbox(station, [300, 300, 100, 100])  # inverted: N5b, the soft geometry
    scenarios.malformed_bbox(station, [5000, 0, 6000, 100])  # beyond the capture's width: N5b too
    scenarios.empty_capture(station)

    assert invariants.violators("N5", project=station.project) == set()


@pytest.mark.covers("N7", "planted", "near_miss")
def test_n7_flags_every_later_copy_of_a_box_on_a_capture(invariants):
    station = f.DeploymentFactory()
    copy = scenarios.duplicate_detection(station)
    by_another_algorithm = f.DetectionFactory(source_image=copy.source_image, bbox=copy.bbox)
    scenarios.second_box_on_capture(station)  # near-miss: another box on one capture
    detection(station), detection(station)  # near-miss: the same box on two captures
    scenarios.null_markers_of_two_algorithms(station)  # near-miss: markers have no box

    assert invariants.violators("N7", project=station.project) == {copy.pk, by_another_algorithm.pk}


@pytest.mark.covers("N8", "planted", "near_miss")
def test_n8_warns_about_settled_real_detections_without_a_crop(invariants):
    station = f.DeploymentFactory()
    uncropped = scenarios.uncropped_detection(station)
    blank = scenarios.uncropped_detection(station, path="")
    scenarios.uncropped_detection(station, age=timedelta(hours=20))  # near-miss: the crop may still come
    old_marker = scenarios.empty_capture(station)
    Detection.objects.filter(pk=old_marker.pk).update(created_at=Now() - timedelta(days=9))  # never has a crop
    cropped = detection(station)
    Detection.objects.filter(pk=cropped.pk).update(created_at=Now() - timedelta(days=9))

    assert invariants.violators("N8", project=station.project) == {uncropped.pk, blank.pk}
    assert invariants.check("N8", project=station.project).status == "warned"


@pytest.mark.covers("N9", "planted", "near_miss")
def test_n9_flags_detections_whose_algorithm_is_not_a_detector(invariants):
    station = f.DeploymentFactory()
    wrong = {scenarios.detection_by_a_non_detector(station, kind).pk for kind in ("classification", "unknown", None)}
    for task_type in ("detection", "localization", "segmentation"):
        scenarios.detection_by_a_non_detector(station, task_type)
    scenarios.detection_without_algorithm(station)  # S3's
    scenarios.empty_capture(station)  # a null marker from a detector

    assert invariants.violators("N9", project=station.project) == wrong


@pytest.mark.covers("C7", "planted", "near_miss")
def test_c7_flags_timestamps_that_differ_null_safely(invariants):
    station = f.DeploymentFactory()
    wrong = {
        scenarios.processing_time_stamp(station).pk,
        scenarios.unstamped_detection(station).pk,
        scenarios.undated_capture(station).pk,
    }
    scenarios.undated_capture(station, detection_too=True)  # near-miss: NULL on both sides, and classified
    scenarios.empty_capture(station)
    detection(station)

    assert invariants.violators("C7", project=station.project) == wrong


@pytest.mark.covers("C7", "repair")
def test_c7_repair_copies_the_capture_timestamp_onto_exactly_the_violators(invariants):
    station = f.DeploymentFactory()
    wrong = [
        scenarios.processing_time_stamp(station),
        scenarios.unstamped_detection(station),
        scenarios.undated_capture(station),
    ]
    near_miss = scenarios.undated_capture(station, detection_too=True)
    healthy = detection(station)
    untouched = Detection.objects.filter(pk__in=[near_miss.pk, healthy.pk]).order_by("pk")
    before = list(untouched.values())

    outcome = invariants.repair("C7", project=station.project)

    assert (outcome.status, outcome.fixed) == ("repaired", 3)
    for row in wrong:
        row.refresh_from_db()
        assert row.timestamp == row.source_image.timestamp
    assert wrong[2].timestamp is None  # an undated capture's detection becomes undated too
    assert list(untouched.values()) == before
    assert invariants.repair("C7", project=station.project).fixed == 0  # idempotent


@pytest.mark.covers("N5b", "planted", "near_miss")
def test_n5b_warns_about_boxes_outside_their_frame_only(invariants):
    station = f.DeploymentFactory()
    inverted = scenarios.malformed_bbox(station, [300, 300, 100, 100])
    too_wide = scenarios.malformed_bbox(station, [5000, 0, 6000, 100])  # the factory's captures are 4096 wide
    negative = scenarios.malformed_bbox(station, [-5, 10, 50, 60])
    scenarios.malformed_bbox(station, [0, 0, 4096, 2160])  # near-miss: exactly the frame
    scenarios.malformed_bbox(station, [])  # malformed boxes are N5's, never cast here
    scenarios.malformed_bbox(station, {"x": 1})
    unknown_size = scenarios.malformed_bbox(station, [5000, 0, 6000, 100])
    SourceImage.objects.filter(pk=unknown_size.source_image_id).update(width=None, height=None)

    outcome = invariants.check("N5b", project=station.project)

    assert set(outcome.sample) == {inverted.pk, too_wide.pk, negative.pk}
    assert outcome.status == "warned"
