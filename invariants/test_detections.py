"""Detections and null markers."""

from datetime import timedelta

from django.db.models import BooleanField, Exists, Func, OuterRef, Q, Subquery
from django.db.models.functions import Now

from antenna_invariants.journal import delete_journaled
from antenna_invariants.mirror.models import Classification, Detection, SourceImage
from antenna_invariants.rules import rule
from antenna_invariants.sql import IsDistinctFrom, has_an_older_twin

DETECTOR_TASK_TYPES = ("detection", "localization", "segmentation")
CROP_GRACE = timedelta(days=1)  # crops are written after the detections: give the cropper a day


class IsBox(Func):
    """The jsonb value is an array of exactly four numbers (CASE keeps jsonb_array_length off non-arrays).
    The four elements are tested one by one, not through a set-returning subquery: this runs on every box."""

    template = (
        "(CASE WHEN jsonb_typeof(%(expressions)s) = 'array' THEN jsonb_array_length(%(expressions)s) = 4 "
        + " ".join(f"AND jsonb_typeof((%(expressions)s)->{i}) = 'number'" for i in range(4))
        + " ELSE false END)"
    )
    output_field = BooleanField()


class OutsideItsFrame(Func):
    """A four-number box [x1, y1, x2, y2] that is inverted, negative, or beyond its capture's width or height
    (when known).  Only evaluated on well-formed boxes, so the casts never see anything but numbers."""

    output_field = BooleanField()

    def as_sql(self, compiler, connection):
        (box, width, height), params = zip(*(compiler.compile(e) for e in self.source_expressions), strict=True)
        assert not any(params), "OutsideItsFrame takes plain columns"
        is_box, box_params = compiler.compile(IsBox(self.source_expressions[0]))
        x1, y1, x2, y2 = (f"(({box})->>{i})::float8" for i in range(4))
        bad = (
            f"{x1} >= {x2} OR {y1} >= {y2} OR least({x1}, {y1}) < 0 "
            f"OR ({width} IS NOT NULL AND {x2} > {width}) OR ({height} IS NOT NULL AND {y2} > {height})"
        )
        sql = f"(CASE WHEN {is_box} THEN ({bad}) ELSE false END)"
        return sql, box_params


def null_markers(detections):
    return detections.filter(bbox__isnull=True)


def real(detections):
    return detections.filter(bbox__isnull=False)


@rule("S3", hint="synthetic seed rows have no algorithm; otherwise find the pipeline run that wrote them")
def test_detection_has_a_detection_algorithm(detections):
    """Every detection, null markers included, names the algorithm that produced it: the per-algorithm
    "was this capture processed" checks cannot see a detection without one."""
    return detections.filter(detection_algorithm__isnull=True)


@rule("N1", incremental=True, risk="L", depends_on=())
def test_null_marker_has_no_occurrence(detections):
    """A null marker (bbox IS NULL: "this algorithm ran and found nothing") belongs to no occurrence;
    before #1312 every null marker got an occurrence of its own."""
    return null_markers(detections).filter(occurrence__isnull=False)


@test_null_marker_has_no_occurrence.repair
def unlink_the_null_marker(violators):
    """Set the marker's occurrence to NULL; an occurrence left without a real detection is then an F1
    phantom, reported (and repaired) by F1."""
    return violators.update(occurrence=None)


@rule("N2", hint="a classifier ran on a null marker: find the job; delete the classifications if unreferenced")
def test_null_marker_has_no_classifications(detections):
    """A null marker has nothing to classify, so no classification points at it."""
    classified = Exists(Classification.objects.filter(detection=OuterRef("pk")))
    return null_markers(detections).filter(classified)


@rule("N3", risk="H", depends_on=("source_image__detections",))
def test_one_null_marker_per_capture_and_algorithm(detections):
    """At most one null marker per (capture, detection algorithm); the oldest is the one kept, every later
    one is a violator.  A NULL algorithm forms one group of its own (NULLs group together, as in GROUP BY)."""
    twin = has_an_older_twin(Detection, ["source_image", "detection_algorithm"], Q(bbox__isnull=True))
    return null_markers(detections).filter(twin)


@test_one_null_marker_per_capture_and_algorithm.repair
def delete_the_extra_null_markers(violators):
    """Delete the extras after journaling them (and nulling any classification that points at them)."""
    return delete_journaled(violators)


@rule("N4", severity="warn", hint="the capture was reprocessed and found something: the marker is stale")
def test_capture_has_no_null_marker_beside_a_real_detection_of_its_algorithm(detections):
    """A capture does not carry both a null marker and a real detection from the same algorithm (the
    violators are the markers).  Markers from an unknown (NULL) algorithm are left to S3."""
    found_something = Exists(
        Detection.objects.filter(
            source_image=OuterRef("source_image"),
            detection_algorithm=OuterRef("detection_algorithm"),
            bbox__isnull=False,
        )
    )
    return null_markers(detections).filter(found_something)


@rule("N5", incremental=True, hint="Antenna counts these as real detections; re-run detection on the captures, then "
                                   "delete them")
def test_real_detection_bbox_is_four_numbers(detections):
    """A real detection's bbox is a JSON array of exactly four numbers [x1, y1, x2, y2]: not [] (the legacy
    null marker, which counts as real today), JSON null, an object, a string or a list of another length.
    The soft geometry is N5b."""
    return real(detections).alias(is_box=IsBox("bbox")).filter(is_box=False)


@rule("N5b", incremental=("source_image",), severity="warn", hint="look at the detector's output for these captures: "
                                                                  "such boxes crop badly or not at all")
def test_real_detection_box_lies_inside_its_capture(detections):
    """(soft) A well-formed box has x1 < x2 and y1 < y2, no negative corner, and lies inside its capture's
    width and height when those are known (the geometric half of catalogue N5)."""
    outside = OutsideItsFrame("bbox", "source_image__width", "source_image__height")
    return real(detections).alias(outside=outside).filter(outside=True)


@rule("N6", risk="L", hint="re-run the occurrence step for these captures, or create one occurrence per detection")
def test_real_detection_has_an_occurrence(detections):
    """Every real detection (bbox set) belongs to an occurrence; an occurrence deleted through the ORM
    leaves its detections orphaned, hidden from every count."""
    return detections.filter(bbox__isnull=False, occurrence__isnull=True)


@rule("N7", hint="merge each duplicate into the oldest: move classifications and occurrence links, then delete")
def test_no_two_real_detections_share_a_capture_and_bbox(detections):
    """No two real detections have the same (capture, bbox), whatever their algorithm (Antenna looks real
    detections up by capture and exact box); the oldest is the original, every later one is a violator."""
    return real(detections).filter(has_an_older_twin(Detection, ["source_image", "bbox"], Q(bbox__isnull=False)))


@rule("N8", severity="warn", hint="run create_missing_detection_images for the project")
def test_real_detection_has_a_crop(detections):
    """A real detection has a crop image path.  Crops are written after the detections, so only detections
    created more than a day ago (by the database clock) count; null markers never have one."""
    settled = real(detections).filter(created_at__lt=Now() - CROP_GRACE)
    return settled.filter(Q(path__isnull=True) | Q(path=""))


@rule("N9", incremental=("detection_algorithm",), hint="the algorithm's task_type is wrong, or a classifier's output "
                                                       "was saved as detections")
def test_detection_algorithm_is_a_detector(detections):
    """A detection's algorithm has a detector task type (detection, localization or segmentation); a NULL
    task type is not one.  Detections without an algorithm are S3's."""
    detector = Q(detection_algorithm__task_type__in=DETECTOR_TASK_TYPES)
    return detections.filter(detection_algorithm__isnull=False).exclude(detector)


@rule("C7", incremental=("source_image",), risk="L", depends_on=("source_image",))
def test_detection_timestamp_is_its_capture_timestamp(detections):
    """A detection's timestamp is a copy of its capture's timestamp, NULL-safe: set on one side and NULL on
    the other is a violation, NULL on both is not (the processing-time stamp bug, #360)."""
    return detections.filter(IsDistinctFrom("timestamp", "source_image__timestamp"))


@test_detection_timestamp_is_its_capture_timestamp.repair
def copy_the_capture_timestamp(violators):
    """Copy the capture's timestamp onto the detection, in one UPDATE."""
    capture = SourceImage.objects.filter(pk=OuterRef("source_image")).values("timestamp")[:1]
    return violators.update(timestamp=Subquery(capture))
