"""S4 (event has a deployment), C2 (event project = deployment project), E1 (start <= end), E2 (no empty
events), E3 (soft: one night, grouped by its New York date)."""

from datetime import timedelta

import pytest

from antenna_invariants.mirror.models import Event
from antenna_invariants.rules import RULES
from antenna_invariants.scope import NO_PROJECT
from fixtures import factories as f
from fixtures.scenarios import events as scenarios


@pytest.mark.covers("S4", "planted", "scope")
def test_s4_flags_events_without_deployment_in_scope_only(invariants):
    mine, other = f.DeploymentFactory(), f.DeploymentFactory()
    cut_loose = scenarios.event_of_a_deleted_deployment(mine)
    scenarios.event_of_a_deleted_deployment(other)
    healthy = scenarios.event(mine)
    before = invariants.snapshot()

    assert invariants.violators("S4", project=mine.project) == {cut_loose.pk}
    assert healthy.pk not in invariants.violators("S4")
    assert invariants.snapshot() == before
    assert RULES["S4"].repair_func is None


@pytest.mark.covers("S4", "near_miss")
def test_s4_leaves_events_that_have_a_deployment(invariants):
    station = f.DeploymentFactory()
    without_project, of_a_loose_deployment, empty = scenarios.events_with_a_deployment(station)
    cut_loose = scenarios.event_of_a_deleted_deployment(station)

    assert invariants.violators("S4") == {cut_loose.pk}
    assert invariants.violators("C2", project=NO_PROJECT) == {without_project.pk}  # C2's and E2's, not S4's
    assert empty.pk in invariants.violators("E2", project=station.project)
    assert of_a_loose_deployment.deployment_id is not None


@pytest.mark.covers("C2", "planted", "near_miss")
def test_c2_flags_mismatched_and_missing_projects_only(invariants):
    station, old = f.DeploymentFactory(), f.ProjectFactory()
    left = scenarios.event_left_in_old_project(station, old)
    unassigned = scenarios.event_without_project(station)
    scenarios.event_of_a_deleted_deployment(station)  # no deployment: S4's, not C2's
    healthy = scenarios.event(station)

    assert invariants.violators("C2", project=old) == {left.pk}
    assert invariants.violators("C2", project=NO_PROJECT) == {unassigned.pk}
    assert invariants.violators("C2", project=station.project) == set()
    assert healthy.pk not in invariants.violators("C2")


@pytest.mark.covers("C2", "repair", "scope")
def test_c2_repair_copies_the_deployment_project_in_scope_only(invariants):
    station, other = f.DeploymentFactory(), f.DeploymentFactory()
    unassigned = scenarios.event_without_project(station)
    theirs = scenarios.event_left_in_old_project(other, f.ProjectFactory())
    healthy = scenarios.event(station)
    before = Event.objects.filter(pk=healthy.pk).values().get()

    outcome = invariants.repair("C2", project=NO_PROJECT)

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("repaired", 1, 0)
    unassigned.refresh_from_db()
    assert unassigned.project_id == station.project_id
    assert invariants.violators("C2", project=theirs.project_id) == {theirs.pk}
    assert Event.objects.filter(pk=healthy.pk).values().get() == before
    assert invariants.repair("C2", project=NO_PROJECT).fixed == 0  # idempotent


def test_c2_repair_leaves_events_of_a_projectless_deployment(invariants):
    loose, owner = f.DeploymentFactory(project=None), f.ProjectFactory()
    stranded = scenarios.event_left_in_old_project(loose, owner)

    outcome = invariants.repair("C2", project=owner)

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("failed", 0, 1)
    stranded.refresh_from_db()
    assert stranded.project_id == owner.pk


def test_c2_check_mode_writes_nothing(invariants):
    scenarios.event_without_project(f.DeploymentFactory())
    before = invariants.snapshot()
    assert invariants.check("C2", project=NO_PROJECT).violations == 1
    assert invariants.snapshot() == before


@pytest.mark.covers("E1", "planted", "near_miss")
def test_e1_flags_events_ending_before_they_start(invariants):
    station = f.DeploymentFactory()
    reversed_ = scenarios.event_ending_before_it_starts(station)
    empty_reversed = scenarios.event_ending_before_it_starts(station, captures=0)
    open_ended = scenarios.event(station, end=None)
    instant = scenarios.event(station, captures=0)
    Event.objects.filter(pk=instant.pk).update(end=instant.start)  # start = end is allowed
    healthy = scenarios.event(station)

    assert invariants.violators("E1", project=station.project) == {reversed_.pk, empty_reversed.pk}
    assert not {open_ended.pk, instant.pk, healthy.pk} & invariants.violators("E1")


@pytest.mark.covers("E1", "repair", "scope")
def test_e1_repair_recomputes_from_captures_and_leaves_empty_events(invariants):
    station, other = f.DeploymentFactory(), f.DeploymentFactory()
    reversed_ = scenarios.event_ending_before_it_starts(station, captures=3)
    first, last = reversed_.start + timedelta(minutes=10), reversed_.start + timedelta(minutes=30)
    empty_reversed = scenarios.event_ending_before_it_starts(station, captures=0)
    theirs = scenarios.event_ending_before_it_starts(other)
    healthy = scenarios.event(station)
    before = Event.objects.filter(pk=healthy.pk).values().get()

    outcome = invariants.repair("E1", project=station.project)

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("failed", 1, 1)
    reversed_.refresh_from_db()
    assert (reversed_.start, reversed_.end) == (first, last)
    assert invariants.violators("E1", project=station.project) == {empty_reversed.pk}
    assert invariants.violators("E1", project=other.project) == {theirs.pk}
    assert Event.objects.filter(pk=healthy.pk).values().get() == before
    assert invariants.repair("E1", project=station.project).fixed == 0  # idempotent


def test_e1_and_k2_repairs_write_the_same_bounds_in_either_order(invariants):
    from django.db import transaction

    from fixtures.scenarios import counts

    station = f.DeploymentFactory()
    reversed_ = scenarios.event_ending_before_it_starts(station)
    partly_untimed = scenarios.event_ending_before_it_starts(station)
    f.SourceImageFactory(event=partly_untimed, deployment=station, project=station.project, timestamp=None)
    counts.refresh_all()
    for event in (reversed_, partly_untimed):  # reversed again after the recount: E1's and K2's
        Event.objects.filter(pk=event.pk).update(end=event.start - timedelta(hours=1))

    bounds = []
    for order in (("E1", "K2"), ("K2", "E1")):
        savepoint = transaction.savepoint()
        for rule_id in order:
            invariants.repair(rule_id, project=station.project)
            if rule_id == "E1":  # E1's repair alone already gives Antenna's bounds: nothing left for K2
                assert invariants.violators("K2", project=station.project) == set()
        bounds.append(sorted(Event.objects.filter(deployment=station).values_list("pk", "start", "end")))
        assert invariants.violators("E1", project=station.project) == set()
        assert invariants.violators("K2", project=station.project) == set()
        transaction.savepoint_rollback(savepoint)
    assert bounds[0] == bounds[1]
    assert dict((pk, end) for pk, _, end in bounds[0])[partly_untimed.pk] is None  # what Antenna writes


def test_e1_check_mode_writes_nothing(invariants):
    station = f.DeploymentFactory()
    scenarios.event_ending_before_it_starts(station)
    before = invariants.snapshot()
    assert invariants.check("E1", project=station.project).violations == 1
    assert invariants.snapshot() == before


@pytest.mark.covers("E2", "planted", "near_miss", "scope")
def test_e2_flags_events_without_captures_and_occurrences(invariants):
    station, other = f.DeploymentFactory(), f.DeploymentFactory()
    empty = scenarios.empty_event(station)
    empty_reversed = scenarios.event_ending_before_it_starts(station, captures=0)
    occurrences_only = scenarios.event_with_only_occurrences(station)
    healthy = scenarios.event(station)
    scenarios.empty_event(other)

    assert invariants.violators("E2", project=station.project) == {empty.pk, empty_reversed.pk}
    assert not {occurrences_only.pk, healthy.pk} & invariants.violators("E2")


def test_e2_is_report_only_and_check_writes_nothing(invariants):
    station = f.DeploymentFactory()
    scenarios.empty_event(station)
    before = invariants.snapshot()
    assert invariants.check("E2", project=station.project).violations == 1
    assert invariants.snapshot() == before
    assert RULES["E2"].repair_func is None


@pytest.mark.covers("E3", "planted", "near_miss")
def test_e3_warns_on_long_events_and_stale_group_by(invariants):
    station = f.DeploymentFactory()
    long_ = scenarios.event_spanning_days(station)
    regrouped = scenarios.event_grouped_by_another_date(station)
    near_misses = [
        scenarios.event_of_exactly_24_hours(station),
        scenarios.event_starting_late_at_night(station),  # the next day in UTC, the same day in New York
        scenarios.event(station, captures=3),
    ]

    assert invariants.violators("E3", project=station.project) == {long_.pk, regrouped.pk}
    assert not {e.pk for e in near_misses} & invariants.violators("E3")
    assert invariants.check("E3", project=station.project).status == "warned"  # soft: never "failed"


@pytest.mark.covers("E3", "near_miss")
def test_e3_compares_dates_in_new_york_whatever_the_session_time_zone(invariants):
    from django.db import connection

    station = f.DeploymentFactory()
    late = scenarios.event_starting_late_at_night(station)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL TIME ZONE 'UTC'")
        assert late.pk not in invariants.violators("E3", project=station.project)
        cursor.execute("SET LOCAL TIME ZONE 'America/New_York'")


@pytest.mark.covers("E3", "scope")
def test_e3_respects_scope_and_check_writes_nothing(invariants):
    mine, other = f.DeploymentFactory(), f.DeploymentFactory()
    long_ = scenarios.event_spanning_days(mine)
    scenarios.event_spanning_days(other)
    before = invariants.snapshot()

    assert invariants.violators("E3", project=mine.project) == {long_.pk}
    assert invariants.snapshot() == before
    assert RULES["E3"].severity == "warn"
    assert RULES["E3"].repair_func is None
