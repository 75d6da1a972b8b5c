"""Jobs: stale running jobs (J1), final jobs without finished_at (J2), required links (J3), links inside the
job's project (J4), a job row that contradicts itself (J5), job-log retention (JL1) and Antenna's own
watchdogs (B1).  The catalogue (antenna-data-model.md §8) lists the job rules without ids; J1-J4 are ours,
from §6 and §7 of the fact sheet and research entry 15; J5, JL1 and B1 are issue 16's.
"""

from datetime import timedelta

from django.db.models import BooleanField, F, Q
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KT
from django.db.models.functions import Now

from antenna_invariants.journal import purge_journaled
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


@rule("J5", incremental=True, hint="read the job's logs: re-run it, or set the status its progress shows (Job.save "
                                   "logs the mismatch)")
def test_job_agrees_with_itself(jobs):
    """A job row agrees with itself: its status equals progress.summary.status (when the progress has one); a
    SUCCESS job's stages are all complete and final (progress >= 1 and a final status: Antenna's
    JobProgress.is_complete; a job with no stages has nothing incomplete); started_at <= finished_at.  Job.save
    only logs a mismatch; lost status updates and reapers racing the workers leave them (#1337, #1342, #1235,
    #1338).  Overlaps J1 on a running job whose progress says it finished."""
    summary = Q(summary_status__isnull=False) & ~Q(summary_status=F("status"))
    final = ", ".join(f"'{s}'" for s in FINAL)
    unfinished_stage = RawSQL(
        f"""EXISTS (SELECT FROM jsonb_array_elements(CASE WHEN jsonb_typeof("jobs_job"."progress" -> 'stages') = 'array'
                                                       THEN "jobs_job"."progress" -> 'stages' END) s
                     WHERE NOT (CASE WHEN jsonb_typeof(s -> 'progress') = 'number' THEN (s ->> 'progress')::float8 >= 1
                                     ELSE false END AND coalesce(s ->> 'status', '') IN ({final})))""",
        [], output_field=BooleanField(),
    )
    return jobs.annotate(summary_status=KT("progress__summary__status")).filter(
        summary | (Q(status="SUCCESS") & Q(unfinished_stage)) | Q(started_at__gt=F("finished_at"))
    )


@rule("JL1", risk="H", depends_on=(), settings={"joblog_max_age": timedelta(days=90)})
def test_job_logs_respect_the_retention_age(job_logs, *, joblog_max_age):
    """No job log is older than ``invariants_joblog_max_age`` (ini option, default 90d) by the database's clock.
    Antenna writes a jobs_joblog row per log line and never prunes them; #1277 asks this framework for the
    retention check (#1188).  The age is a setting, not a fact of Antenna: 90 days is the issue's default."""
    return job_logs.filter(created_at__lt=Now() - joblog_max_age)


@test_job_logs_respect_the_retention_age.repair
def delete_the_old_logs(violators):
    """Delete them in one statement.  Log lines are not worth a journal line each: the journal records their
    count and id range (a ``purge`` line), and undo cannot bring them back (README, repair)."""
    return purge_journaled(violators)


WATCHDOGS = ("jobs.health_check", "celery.check_processing_services_online")  # jobs/0020, ml/0018
BEAT_SLACK = timedelta(minutes=5)  # celery beat wakes at least every 5 minutes and saves last_run_at every 3
# The longest a task's schedule lets pass between two runs: an interval schedule's period; for a crontab, its
# step in minutes (*/N) or hours, a fixed minute hourly, a fixed hour daily, 31 days when it names days or months.
SCHEDULE_PERIOD = r"""
SELECT t.id FROM django_celery_beat_periodictask t
  LEFT JOIN django_celery_beat_intervalschedule i ON i.id = t.interval_id
  LEFT JOIN django_celery_beat_crontabschedule c ON c.id = t.crontab_id
 WHERE t.last_run_at < now() - %s - 2 * coalesce(
       i.every * ('1 ' || i.period)::interval,
       CASE WHEN c.id IS NULL THEN interval '1 day'
            WHEN (c.day_of_week, c.day_of_month, c.month_of_year) <> ('*', '*', '*') THEN interval '31 days'
            WHEN c.minute = '*' AND c.hour = '*' THEN interval '1 minute'
            WHEN c.minute ~ '^\*/\d+$' AND c.hour = '*' THEN split_part(c.minute, '/', 2)::int * interval '1 minute'
            WHEN c.hour = '*' THEN interval '1 hour'
            WHEN c.hour ~ '^\*/\d+$' THEN split_part(c.hour, '/', 2)::int * interval '1 hour'
            ELSE interval '1 day' END)"""


@rule("B1", hint="restart celery beat (and its workers), enable the task; a missing one is re-created by Antenna's "
                 "migrations jobs/0020 and ml/0018 (migrate them back and forth) or by hand in the admin")
def test_antennas_watchdogs_are_alive(periodic_tasks):
    """Antenna's watchdogs run: the periodic tasks jobs.health_check (reaps stuck jobs) and
    celery.check_processing_services_online exist in django_celery_beat_periodictask (a missing one is listed
    by name), are enabled, and ran (last_run_at) within twice their schedule's period plus BEAT_SLACK.  When
    beat hung for 12+ hours a stuck job was never reaped (PR #1024); the rows come from the data migrations
    jobs/0020 (every 15 minutes) and ml/0018 (every 5).  Global: one case, whatever the scope."""
    watchdogs = periodic_tasks.filter(name__in=WATCHDOGS)
    late = RawSQL(SCHEDULE_PERIOD, [BEAT_SLACK])
    return watchdogs.filter(Q(enabled=False) | Q(last_run_at__isnull=True) | Q(pk__in=late))


@test_antennas_watchdogs_are_alive.absent
def missing_watchdogs(periodic_tasks):
    present = set(periodic_tasks.filter(name__in=WATCHDOGS).values_list("name", flat=True))
    return [name for name in WATCHDOGS if name not in present]
