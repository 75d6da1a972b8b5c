"""Jobs: stale running jobs (J1), final jobs without finished_at (J2), required links (J3), links inside the
job's project (J4).  The catalogue (antenna-data-model.md §8) lists the job rules without ids; J1-J4 are ours,
from §6 and §7 of the fact sheet and research entry 15.
"""

from datetime import timedelta

from django.db.models import F, Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Now

from antenna_invariants.rules import rule

STALE_AFTER_MINUTES = 10  # Antenna's reaper cutoff since #1235 (it once reused a 72-hour UI cutoff)
RUNNING = ["PENDING", "STARTED", "RETRY", "CANCELING", "UNKNOWN"]
FINAL = ["SUCCESS", "FAILURE", "REVOKED"]
REQUIRED_LINK = {
    "ml": "pipeline",
    "data_storage_sync": "deployment",
    "regroup_events": "deployment",
    "populate_captures_collection": "source_image_collection",
    "data_export": "data_export_id",
}
PROJECT_LINKS = ["deployment", "source_image_collection", "source_image_single"]


@rule("J1", risk="M", depends_on=())
def test_running_job_is_not_stale(jobs):
    """No job sits in a running state (PENDING, STARTED, RETRY, CANCELING, UNKNOWN) with updated_at more than
    STALE_AFTER_MINUTES before the database's now().  A CREATED job has not started and is never stale
    (reaping those was #1354); RECEIVED and the final states are not running."""
    cutoff = Now() - timedelta(minutes=STALE_AFTER_MINUTES)
    return jobs.filter(status__in=RUNNING, updated_at__lt=cutoff)


@test_running_job_is_not_stale.repair
def mark_the_job_failed(violators):
    """Mark the job FAILURE with finished_at = now() (progress.summary.status too).  The UPDATE re-checks the
    status and the cutoff, so a job that moved on since the check is untouched.  A job whose progress
    already reports a final status finished and lost its status update (#1337/#1338): failing it would
    contradict work that completed, so it is left for a person (unfixable)."""
    summary_is_final = Q(progress__summary__status__in=FINAL)
    progress = RawSQL(
        """CASE WHEN jsonb_typeof(progress -> 'summary') = 'object'
                THEN jsonb_set(progress, '{summary,status}', '"FAILURE"') ELSE progress END""",
        [],
    )
    return violators.exclude(summary_is_final).update(
        status="FAILURE", finished_at=Now(), updated_at=Now(), progress=progress
    )


@rule("J2", incremental=True, risk="L", depends_on=())
def test_final_job_has_finished_at(jobs):
    """A job in a final state (SUCCESS, FAILURE, REVOKED) has finished_at set."""
    return jobs.filter(status__in=FINAL, finished_at__isnull=True)


@test_final_job_has_finished_at.repair
def finished_when_last_updated(violators):
    """Set finished_at to updated_at, the last time the job was written."""
    return violators.update(finished_at=F("updated_at"), updated_at=Now())


@rule("J3", hint="the job cannot be re-run as it is: set the link by hand, or delete the job")
def test_job_has_the_link_its_type_needs(jobs):
    """A job has the link its type needs: ml a pipeline, data_storage_sync and regroup_events a deployment,
    populate_captures_collection a collection, data_export a data export (§6).  Deleting a pipeline or a
    collection nulls the link (SET_NULL)."""
    missing = Q()
    for job_type, link in REQUIRED_LINK.items():
        missing |= Q(job_type_key=job_type, **{f"{link}__isnull": True})
    return jobs.filter(missing)


@rule("J4", hint="point the job at its own project's deployment, collection or capture, or delete the job")
def test_job_links_stay_in_its_project(jobs):
    """A job's deployment, collection and single capture belong to the job's project (a linked row without a
    project does not).  Moving a deployment left jobs on the old project's collections, which would run on
    the wrong captures if re-run (research §13).  This is also the job half of catalogue C11."""
    outside = Q()
    for link in PROJECT_LINKS:
        outside |= Q(**{f"{link}__isnull": False}) & ~Q(**{f"{link}__project": F("project")})
    return jobs.filter(outside)
