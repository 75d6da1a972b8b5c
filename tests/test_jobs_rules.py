"""J1 (no stale running job), J2 (final job has finished_at), J3 (job type has its link), J4 (job links stay
in the job's project)."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.db.models.functions import Now

from antenna_invariants.mirror.models import Job
from antenna_invariants.rules import RULES
from antenna_invariants.scope import Scope
from fixtures import factories as f
from fixtures.scenarios import jobs as scenarios
from invariants.test_jobs import FINAL, RUNNING


@pytest.mark.covers("J1", "planted", "near_miss")
def test_j1_flags_stale_running_jobs_only(invariants):
    station = f.DeploymentFactory()
    stale = {scenarios.stale_running_job(station, status=s) for s in RUNNING}
    resurrected = scenarios.finished_job_marked_running(station)
    near_misses = [
        scenarios.recently_updated_job(station),
        scenarios.created_job_never_started(station),
        scenarios.running_job(station, status="RECEIVED"),
        scenarios.final_job_without_finished_at(station),  # final: J2's business, never J1's
        scenarios.job(station),
    ]

    assert invariants.violators("J1", project=station.project) == {j.pk for j in stale} | {resurrected.pk}
    assert not {j.pk for j in near_misses} & invariants.violators("J1")


@pytest.mark.covers("J1", "planted", "near_miss")
def test_j1_uses_the_cutoff_on_the_database_clock(invariants):
    station = f.DeploymentFactory()
    just_over = scenarios.running_job(station, idle=timedelta(minutes=10, seconds=30))
    just_under = scenarios.running_job(station, idle=timedelta(minutes=9))

    assert invariants.violators("J1", project=station.project) == {just_over.pk}
    assert just_under.pk not in invariants.violators("J1")


@pytest.mark.covers("J1", "repair", "scope")
def test_j1_repair_fails_stale_jobs_in_scope_and_spares_finished_ones(invariants):
    station, other = f.DeploymentFactory(), f.DeploymentFactory()
    stale = scenarios.stale_running_job(station)
    resurrected = scenarios.finished_job_marked_running(station)
    recent = scenarios.recently_updated_job(station)
    created = scenarios.created_job_never_started(station)
    theirs = scenarios.stale_running_job(other)
    untouched = {j.pk: Job.objects.filter(pk=j.pk).values().get() for j in (resurrected, recent, created, theirs)}

    outcome = invariants.repair("J1", project=station.project)

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("failed", 1, 1)
    stale.refresh_from_db()
    assert stale.status == "FAILURE"
    assert stale.finished_at is not None
    assert stale.progress["summary"]["status"] == "FAILURE"
    assert {pk: Job.objects.filter(pk=pk).values().get() for pk in untouched} == untouched
    assert invariants.violators("J1", project=station.project) == {resurrected.pk}
    assert invariants.repair("J1", project=station.project).fixed == 0  # idempotent


def test_j1_repair_rechecks_inside_the_update(invariants):
    """A job that moved on between the check and the repair (a worker wrote progress, or it finished) is
    left alone: the UPDATE carries the violation condition."""
    station = f.DeploymentFactory()
    resumed, finished = scenarios.stale_running_job(station), scenarios.stale_running_job(station)
    entry = RULES["J1"]
    violators = entry.violations(Scope(project=station.project_id)).filter(pk__in=[resumed.pk, finished.pk])
    Job.objects.filter(pk=resumed.pk).update(updated_at=Now())
    Job.objects.filter(pk=finished.pk).update(status="SUCCESS", finished_at=Now())

    assert entry.repair_func(violators) == 0
    resumed.refresh_from_db()
    finished.refresh_from_db()
    assert (resumed.status, finished.status) == ("STARTED", "SUCCESS")


def test_j1_check_mode_writes_nothing(invariants):
    station = f.DeploymentFactory()
    scenarios.stale_running_job(station)
    before = invariants.snapshot()
    assert invariants.check("J1", project=station.project).violations == 1
    assert invariants.snapshot() == before


@pytest.mark.covers("J2", "planted", "near_miss")
def test_j2_flags_final_jobs_without_finished_at(invariants):
    station = f.DeploymentFactory()
    unfinished = {scenarios.final_job_without_finished_at(station, status=s) for s in FINAL}
    near_misses = [
        scenarios.stale_running_job(station), scenarios.created_job_never_started(station), scenarios.job(station),
    ]

    assert invariants.violators("J2", project=station.project) == {j.pk for j in unfinished}
    assert not {j.pk for j in near_misses} & invariants.violators("J2")


@pytest.mark.covers("J2", "repair", "scope")
def test_j2_repair_takes_finished_at_from_updated_at_in_scope_only(invariants):
    station, other = f.DeploymentFactory(), f.DeploymentFactory()
    revoked = scenarios.final_job_without_finished_at(station)
    theirs = scenarios.final_job_without_finished_at(other)
    healthy = scenarios.job(station)
    before = Job.objects.filter(pk=healthy.pk).values().get()

    outcome = invariants.repair("J2", project=station.project)

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("repaired", 1, 0)
    last_written = revoked.updated_at
    revoked.refresh_from_db()
    assert revoked.finished_at == last_written
    theirs.refresh_from_db()
    assert theirs.finished_at is None
    assert Job.objects.filter(pk=healthy.pk).values().get() == before
    assert invariants.repair("J2", project=station.project).fixed == 0  # idempotent


def test_j2_check_mode_writes_nothing(invariants):
    station = f.DeploymentFactory()
    scenarios.final_job_without_finished_at(station)
    before = invariants.snapshot()
    assert invariants.check("J2", project=station.project).violations == 1
    assert invariants.snapshot() == before


@pytest.mark.covers("J3", "planted", "near_miss", "scope")
def test_j3_flags_jobs_missing_the_link_their_type_needs(invariants):
    station, other = f.DeploymentFactory(), f.DeploymentFactory()
    missing = [
        scenarios.ml_job_without_pipeline(station),
        scenarios.sync_job_without_deployment(station),
        scenarios.job(station, job_type_key="regroup_events", deployment=None),
        scenarios.collection_job_without_collection(station),
        scenarios.export_job_without_export(station),
    ]
    linked = [*scenarios.jobs_with_their_links(station), scenarios.export_job_with_export(station)]
    scenarios.ml_job_without_pipeline(other)

    assert invariants.violators("J3", project=station.project) == {j.pk for j in missing}
    assert not {j.pk for j in linked} & invariants.violators("J3")


def test_j3_is_report_only_and_check_writes_nothing(invariants):
    station = f.DeploymentFactory()
    scenarios.ml_job_without_pipeline(station)
    before = invariants.snapshot()
    assert invariants.check("J3", project=station.project).violations == 1
    assert invariants.snapshot() == before
    assert RULES["J3"].repair_func is None


@pytest.mark.covers("J4", "planted", "near_miss")
def test_j4_flags_links_into_another_project(invariants):
    station = f.DeploymentFactory()
    foreign = [
        scenarios.job_on_another_projects_collection(station),
        scenarios.job_on_another_projects_deployment(station),
        scenarios.job_on_another_projects_capture(station),
        scenarios.job(station, deployment=f.DeploymentFactory(project=None)),  # a deployment with no project
    ]
    linked = scenarios.jobs_with_their_links(station)

    assert invariants.violators("J4", project=station.project) == {j.pk for j in foreign}
    assert not {j.pk for j in linked} & invariants.violators("J4")


@pytest.mark.covers("J4", "scope")
def test_j4_respects_project_scope_and_is_report_only(invariants):
    mine, other = f.DeploymentFactory(), f.DeploymentFactory()
    cross = scenarios.job_on_another_projects_deployment(mine)
    theirs = scenarios.job(other, deployment=mine)  # their job on my deployment: reported in their case only
    before = invariants.snapshot()

    assert invariants.violators("J4", project=mine.project) == {cross.pk}
    assert invariants.violators("J4", project=other.project) == {theirs.pk}
    assert invariants.snapshot() == before
    assert RULES["J4"].repair_func is None


# --- J5: a job row agrees with itself ---------------------------------------------------------------------


@pytest.mark.covers("J5", "planted", "near_miss")
def test_j5_flags_jobs_contradicting_themselves_and_none_of_the_near_misses(invariants):
    station = f.DeploymentFactory()
    planted = [scenarios.status_contradicting_progress(station), scenarios.success_with_an_unfinished_stage(station),
               scenarios.started_after_it_finished(station)]
    near_misses = scenarios.jobs_agreeing_with_themselves(station)
    resurrected = scenarios.finished_job_marked_running(station)  # J1's too: its status contradicts its progress

    found = invariants.violators("J5", project=station.project)
    assert found == {j.pk for j in planted} | {resurrected.pk}
    assert not {j.pk for j in near_misses} & found


@pytest.mark.covers("J5", "scope")
def test_j5_respects_scope_and_check_writes_nothing(invariants):
    # a job always has a project (NOT NULL): the project-less case has nothing to report
    def plant(station):
        return scenarios.status_contradicting_progress(station) if station.project_id else []

    invariants.assert_scoped("J5", plant)
    invariants.assert_check_writes_nothing("J5", scenarios.success_with_an_unfinished_stage)
    assert RULES["J5"].repair_func is None


# --- JL1: job-log retention -------------------------------------------------------------------------------


@pytest.mark.covers("JL1", "planted", "near_miss")
def test_jl1_flags_logs_older_than_the_retention_age(invariants):
    station = f.DeploymentFactory()
    old = scenarios.old_job_logs(station)
    recent = scenarios.recent_job_logs(station)

    assert invariants.violators("JL1", project=station.project) == {row.pk for row in old}
    assert not {row.pk for row in recent} & invariants.violators("JL1", project=station.project)


def test_jl1_age_is_a_setting(invariants):
    from antenna_invariants.check import check
    from antenna_invariants.options import RuleSettings

    station = f.DeploymentFactory()
    recent = scenarios.recent_job_logs(station)
    thirty_days = RuleSettings(joblog_max_age=timedelta(days=30)).configured(RULES)["JL1"]
    outcome = check(thirty_days, invariants.scope(project=station.project), sample_size=0)
    assert set(outcome.sample) == {recent[1].pk}  # the 89-day-old line


class Ini:
    """A configuration's ini, as ``RuleSettings.from_ini`` reads it (the rest at pytest's defaults)."""

    def __init__(self, joblog_max_age):
        self.values = {"invariants_joblog_max_age": joblog_max_age}

    def getini(self, name):
        return self.values.get(name, [])


def test_two_runs_in_one_process_each_read_their_own_jl1_age(invariants):
    """The age belongs to a run's copy of JL1, not to the process: two configurations made one after the other
    (as two sessions in one interpreter) each check with their own, and the registry keeps the declared one."""
    from antenna_invariants.check import check
    from antenna_invariants.options import RuleSettings

    station = f.DeploymentFactory()
    old, recent = scenarios.old_job_logs(station, count=1), scenarios.recent_job_logs(station)  # 200, 2 and 89 days
    scope = invariants.scope(project=station.project)
    first = RuleSettings.from_ini(Ini("30d"), RULES).configured(RULES)["JL1"]
    second = RuleSettings.from_ini(Ini("1d"), RULES).configured(RULES)["JL1"]
    third = RuleSettings.from_ini(Ini("300d"), RULES).configured(RULES)["JL1"]

    assert set(check(first, scope, sample_size=0).sample) == {old[0].pk, recent[1].pk}
    assert set(check(second, scope, sample_size=0).sample) == {old[0].pk, *(row.pk for row in recent)}
    assert set(check(third, scope, sample_size=0).sample) == set()
    assert set(check(first, scope, sample_size=0).sample) == {old[0].pk, recent[1].pk}  # made first, still its own
    assert dict(first.settings) == {"joblog_max_age": timedelta(days=30)}
    assert dict(RULES["JL1"].settings) == {"joblog_max_age": timedelta(days=90)}  # as declared
    assert invariants.violators("JL1", project=station.project) == {old[0].pk}


@pytest.mark.covers("JL1", "repair")
def test_jl1_repair_deletes_exactly_the_old_logs_and_journals_a_count_and_an_id_range(invariants):
    import json

    from antenna_invariants.mirror.models import JobLog

    station = f.DeploymentFactory()
    old = scenarios.old_job_logs(station, count=3)
    recent = scenarios.recent_job_logs(station)

    outcome = invariants.repair("JL1", project=station.project)

    assert (outcome.status, outcome.fixed) == ("repaired", 3)
    assert set(JobLog.objects.values_list("pk", flat=True)) == {row.pk for row in recent}
    lines = [json.loads(line) for line in Path(outcome.journal).read_text().splitlines()]
    purges = [line for line in lines if line.get("op") == "purge"]
    assert [(p["table"], p["count"], p["first_id"], p["last_id"]) for p in purges] == [
        ("jobs_joblog", 3, min(r.pk for r in old), max(r.pk for r in old))]
    assert not [line for line in lines if line.get("op") == "delete"]  # no line per row
    assert invariants.repair("JL1", project=station.project).fixed == 0  # idempotent

    from antenna_invariants.undo import undo

    result = undo(Path(outcome.journal))  # cannot bring them back, and says so
    assert [(p["table"], p["count"]) for p in result.purged] == [("jobs_joblog", 3)]
    assert set(JobLog.objects.values_list("pk", flat=True)) == {row.pk for row in recent}


@pytest.mark.covers("JL1", "scope")
def test_jl1_respects_scope_and_check_writes_nothing(invariants):
    invariants.assert_scoped("JL1", lambda station: scenarios.old_job_logs(station) if station.project_id else [])
    invariants.assert_check_writes_nothing("JL1", scenarios.old_job_logs)


# --- B1: Antenna's watchdogs ------------------------------------------------------------------------------


@pytest.mark.covers("B1", "near_miss")
def test_b1_passes_when_both_watchdogs_run_on_time(invariants):
    scenarios.watchdogs_alive()
    outcome = invariants.check("B1")
    assert (outcome.status, outcome.violations, outcome.message) == ("passed", 0, "")


@pytest.mark.covers("B1", "planted")
def test_b1_flags_a_hung_beat_a_disabled_and_a_missing_watchdog(invariants):
    hung = scenarios.beat_hung()

    outcome = invariants.check("B1")
    assert (outcome.violations, outcome.sample) == (2, [hung.pk])
    assert outcome.message == "missing: celery.check_processing_services_online"

    disabled = scenarios.watchdog_disabled()
    outcome = invariants.check("B1")
    found = (outcome.status, outcome.violations, outcome.sample, outcome.message)
    assert found == ("failed", 2, [hung.pk, disabled.pk], "")


@pytest.mark.covers("B1", "planted")
def test_b1_reads_the_schedule_of_each_task(invariants):
    never = scenarios.watchdog_on_an_hourly_interval_never_run()
    scenarios.watchdog("celery.check_processing_services_online", ran=timedelta(minutes=16))  # 2 x 5 + 5 < 16
    late = invariants.violators("B1")
    assert never.pk in late
    assert len(late) == 2


@pytest.mark.covers("B1", "scope")
def test_b1_is_global_and_check_writes_nothing(invariants):
    scenarios.beat_hung()
    project = f.ProjectFactory()
    assert RULES["B1"].is_global
    before = invariants.snapshot()
    assert invariants.check("B1", project=project).violations == invariants.check("B1").violations == 2
    assert invariants.snapshot() == before
    assert RULES["B1"].repair_func is None
