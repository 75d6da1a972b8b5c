"""Captures (source images) and their deployment, project, event and collections: S6, S6b, C1, C6, C11; their
timestamps (C12) and sizes (W1)."""

from datetime import datetime, timedelta

from django.db.models import Exists, F, OuterRef, Q
from django.db.models.functions import Trunc

from antenna_invariants.mirror.models import Detection
from antenna_invariants.rules import rule
from antenna_invariants.sql import IsDistinctFrom, copy_deployment_project, project_differs_from_deployment


@rule("S6", hint="give the capture a deployment (and its project) or delete it; deleting a deployment leaves these")
def test_capture_has_a_deployment_and_a_project(captures):
    """A capture has a deployment and a project.  The deployment half of the catalogue entry, a deployment
    has a project, is S6b."""
    return captures.filter(Q(deployment__isnull=True) | Q(project__isnull=True))


@rule("S6b", hint="assign the deployment to its project (Deployment.update_children then realigns its rows)")
def test_deployment_has_a_project(deployments):
    """A deployment has a project (second half of catalogue S6): a deployment without one hides its captures,
    events and occurrences from every project."""
    return deployments.filter(project__isnull=True)


@rule("C1", incremental=("deployment",), risk="L", depends_on=("deployment",))
def test_capture_project_is_its_deployment_project(captures):
    """A capture's project equals its deployment's project (NULL-safe).  Captures without a deployment are
    S6's."""
    return project_differs_from_deployment(captures)


test_capture_project_is_its_deployment_project.repair(copy_deployment_project)


@rule("C6", hint="regroup the deployment (group_images_into_events); it moves captures between events")
def test_capture_sits_in_the_right_event(captures):
    """A capture's event belongs to the capture's deployment (NULL-safe); a capture with a timestamp has an
    event; its timestamp lies in [event.start, event.end] (an open end, NULL, bounds nothing).  A capture
    without a timestamp cannot be grouped and may have no event."""
    other_deployment = Q(event__isnull=False) & IsDistinctFrom("event__deployment", "deployment")
    ungrouped = Q(timestamp__isnull=False, event__isnull=True)
    outside = Q(timestamp__lt=F("event__start")) | Q(timestamp__gt=F("event__end"))
    return captures.filter(other_deployment | ungrouped | outside)


@rule("C11", hint="a person decides: remove the foreign captures from the collection, or clone the collection")
def test_collection_holds_only_its_project_captures(collection_images):
    """Every capture in a collection belongs to the collection's project (a capture without a project does
    not).  Collections sampled before #587 could hold any project's captures.  One violation per foreign
    capture in a collection: the main_sourceimagecollection_images row, shown with its collection id and
    capture id (sourceimagecollection_id, sourceimage_id).  The job half of the catalogue entry (a job's
    deployment and collection are in the job's project) is J4."""
    return collection_images.filter(IsDistinctFrom("sourceimage__project", "sourceimagecollection__project"))


EARLIEST_CAPTURE = datetime(2000, 1, 1)  # Antenna's sync warns about a year before 2000 ("suspicious timestamp")
UPLOAD_WINDOW = timedelta(minutes=5)  # how long before its row was created an upload's fallback stamp can be


@rule("C12", incremental=True, hint="set the capture's real time (EXIF, file name or the camera's log), then "
                                    "regroup the deployment; a capture that cannot be dated should be deleted")
def test_capture_timestamp_is_plausible(captures):
    """A capture's timestamp is plausible: set (C6 allows NULL, C12 owns it), not before 2000-01-01, not later
    than a day after the row's created_at (a day covers the cameras' time zones), and not an upload's fallback:
    create_source_image_from_upload stamps a file without a readable time with now(), so an uploaded capture
    (uploaded_by or test_image set) stamped with sub-second precision (EXIF and file names carry whole
    seconds) within UPLOAD_WINDOW before its row was created.  #1159: "Dec 31, 1969", ungroupable captures."""
    uploaded = Q(uploaded_by__isnull=False) | Q(test_image=True)
    upload_time = (
        uploaded
        & Q(timestamp__gt=Trunc("timestamp", "second"))
        & Q(timestamp__lte=F("created_at"), timestamp__gte=F("created_at") - UPLOAD_WINDOW)
    )
    implausible = (
        Q(timestamp__isnull=True)
        | Q(timestamp__lt=EARLIEST_CAPTURE)
        | Q(timestamp__gt=F("created_at") + timedelta(days=1))
    )
    return captures.filter(implausible | upload_time)


@rule("W1", hint="read the image's size from storage (Antenna's SourceImage.get_dimensions) and save it")
def test_capture_with_detections_has_its_size(captures):
    """A capture with a real detection (a bounding box) has its width and height (set and positive): bounding
    boxes are drawn, cropped and checked (N5b) against them.  Synced captures get them only when a job opens
    the image; #459, #1306, #1374."""
    boxed = Detection.objects.filter(source_image=OuterRef("pk"), bbox__isnull=False)
    unsized = Q(width__isnull=True) | Q(height__isnull=True) | Q(width__lt=1) | Q(height__lt=1)
    return captures.filter(unsized).filter(Exists(boxed))
