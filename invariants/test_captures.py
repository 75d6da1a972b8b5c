"""Captures (source images) and their deployment, project, event and collections: S6, S6b, C1, C6, C11."""

from django.db.models import F, Q

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
