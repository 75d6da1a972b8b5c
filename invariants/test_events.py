"""Events (sessions): S4, C2, E1, E2, E3."""

from datetime import timedelta

from django.db.models import Case, CharField, Exists, F, Func, Max, Min, OuterRef, Q, Subquery, When
from django.db.models.functions import Now

from antenna_invariants.mirror.models import Occurrence, SourceImage
from antenna_invariants.rules import rule
from antenna_invariants.sql import copy_deployment_project, project_differs_from_deployment

MAX_EVENT_HOURS = 24




def new_york_date(column):
    """The YYYY-MM-DD of a timestamptz in America/New_York (Antenna's TIME_ZONE), whatever the session's."""
    template = "to_char(%(expressions)s AT TIME ZONE 'America/New_York', 'YYYY-MM-DD')"
    return Func(F(column), template=template, output_field=CharField())


def captures_with_timestamps():
    return SourceImage.objects.filter(event=OuterRef("pk"), timestamp__isnull=False).order_by().values("event")


@rule("S4", hint="take the deployment from the event's captures (fix_missing_relationships); delete it if empty (E2)")
def test_event_has_a_deployment(events):
    """An event has a deployment; deleting a deployment leaves its events behind, hidden by the API."""
    return events.filter(deployment__isnull=True)


@rule("C2", incremental=("deployment",), risk="L", depends_on=("deployment",))
def test_event_project_is_its_deployment_project(events):
    """An event's project equals its deployment's project (NULL-safe).  Events without a deployment are
    S4's."""
    return project_differs_from_deployment(events)


test_event_project_is_its_deployment_project.repair(copy_deployment_project)


@rule("E1", incremental=True, risk="L", depends_on=("captures",))
def test_event_starts_before_it_ends(events):
    """An event's start is not after its end (an open end, NULL, is allowed).  Such an event with captures is
    also K2's (Antenna's refresh gives it the bounds of its captures)."""
    return events.filter(end__lt=F("start"))


@test_event_starts_before_it_ends.repair
def recompute_start_and_end(violators):
    """Set start and end to what Antenna's recompute (update_calculated_fields_for_events) writes, the same
    bounds K2's repair writes: the first and last timestamps of the event's captures, and an open end when
    one of them has no timestamp.  An event without timestamped captures has nothing to recompute from:
    unfixable (see E2)."""
    timestamps = captures_with_timestamps()
    untimed = SourceImage.objects.filter(event=OuterRef("pk"), timestamp__isnull=True)
    first = Subquery(timestamps.annotate(first=Min("timestamp")).values("first"))
    latest = Subquery(timestamps.annotate(last=Max("timestamp")).values("last"))
    last = Case(When(Exists(untimed), then=None), default=latest)
    return violators.filter(Exists(timestamps)).update(start=first, end=last, updated_at=Now())


@rule("E2", hint="delete_empty_events for the deployment (it has a real dry run); check S4 first")
def test_event_is_not_empty(events):
    """An event has captures or occurrences; regrouping deletes empty events, other paths leave them."""
    captures = SourceImage.objects.filter(event=OuterRef("pk"))
    occurrences = Occurrence.objects.filter(event=OuterRef("pk"))
    return events.filter(~Exists(captures), ~Exists(occurrences))


@rule("E3", incremental=True, severity="warn", hint="regroup the deployment; ask the project first, it changes the "
                                                    "sessions users see")
def test_event_is_one_night(events):
    """(soft) An event lasts at most 24 hours, and its group_by is the date of its start in
    America/New_York.  Continuous monitoring collapsed whole deployments into one event (#1268)."""
    too_long = Q(end__gt=F("start") + timedelta(hours=MAX_EVENT_HOURS))
    return events.filter(too_long | ~Q(group_by=new_york_date("start")))
