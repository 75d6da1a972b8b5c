"""K1-K3: cached counts on captures, events and deployments equal a recount under each row's own project
default filters.

Every test builds healthy rows, makes all counts true with ``counts.refresh_all()``, then lets a bug happen.
Near-miss tests pin the recount to numbers worked out by hand, so a naive COUNT(*) cannot pass them.
"""

from datetime import timedelta

import pytest

from antenna_invariants.mirror.models import Deployment, Event, Occurrence, SourceImage
from antenna_invariants.scope import NO_PROJECT
from fixtures import factories as f
from fixtures.scenarios import counts as scenarios
from fixtures.scenarios import new_event

K1_FIELDS = ("detections_count",)
K2_FIELDS = ("start", "end", "captures_count", "detections_count", "occurrences_count")
K3_FIELDS = (
    "data_source_total_files", "data_source_total_size", "events_count", "captures_count", "detections_count",
    "occurrences_count", "taxa_count", "first_capture_timestamp", "last_capture_timestamp",
)


def capture_of(occurrence):
    return occurrence.detections.get().source_image


def cached(model, row, fields):
    return model.objects.filter(pk=row.pk).values(*fields).get()


def counts_of(model, rows, fields):
    return {row.pk: cached(model, row, fields) for row in rows}


def set_cached(row, **values):
    type(row).objects.filter(pk=row.pk).update(**values)


# -- K1: captures -----------------------------------------------------------------------------------


@pytest.mark.covers("K1", "planted", "near_miss")
def test_k1_flags_exactly_the_stale_captures(invariants):
    station = f.DeploymentFactory()
    low = scenarios.occurrence(station, detections__score=0.3)
    deleted = scenarios.occurrence(station)
    healthy = scenarios.occurrence(station)
    empty, never_counted = scenarios.empty_captures(station)
    scenarios.refresh_all()
    assert invariants.violators("K1", project=station.project) == set()

    scenarios.identified_without_recount(low)  # 0.3 -> 1.0: now passes the 0.5 threshold
    deleted_capture = capture_of(deleted)
    scenarios.occurrence_deleted_without_recount(deleted)  # its detection is orphaned: no longer counts
    set_cached(never_counted, detections_count=None)  # NULL is not 0

    assert invariants.violators("K1", project=station.project) == {
        capture_of(low).pk, deleted_capture.pk, never_counted.pk
    }
    assert not {capture_of(healthy).pk, empty.pk} & invariants.violators("K1", project=station.project)


@pytest.mark.covers("K1", "planted", "near_miss")
def test_k1_counts_under_each_capture_own_project_filters(invariants):
    genus = scenarios.genus()
    strict = f.DeploymentFactory(project=scenarios.filtered_project(threshold=0.9))
    including = f.DeploymentFactory(project=scenarios.filtered_project(include=[genus]))
    excluding = f.DeploymentFactory(project=scenarios.filtered_project(exclude=[genus]))
    unassigned = f.DeploymentFactory(project=None)
    expected = {
        # a naive count says 1 for every one of these
        capture_of(scenarios.occurrence(strict, detections__score=0.8)): 0,  # below 0.9
        capture_of(scenarios.occurrence(strict, detections__score=0.9)): 1,  # >= is inclusive
        # via parents_json
        capture_of(scenarios.occurrence(including, detections__taxon=scenarios.species_of(genus))): 1,
        capture_of(scenarios.occurrence(including, detections__taxon=genus)): 1,  # the taxon itself
        capture_of(scenarios.occurrence(including)): 0,  # outside the included genus
        # ...and the threshold still applies
        capture_of(scenarios.occurrence(including, detections__taxon=genus, detections__score=0.4)): 0,
        capture_of(scenarios.occurrence(excluding, detections__taxon=scenarios.species_of(genus))): 0,  # a descendant
        capture_of(scenarios.occurrence(excluding, detections__taxon=genus)): 0,
        capture_of(scenarios.occurrence(excluding)): 1,
        capture_of(scenarios.occurrence(unassigned, detections__score=0.1)): 1,  # no project, no filter
        capture_of(scenarios.occurrence(unassigned, partial_save=True)): 1,  # even a NULL score
    }
    orphan = capture_of(scenarios.occurrence(unassigned))
    orphan.detections.update(occurrence=None)  # a real detection without occurrence counts without project
    expected[orphan] = 1
    projected_orphan = capture_of(scenarios.occurrence(excluding))
    projected_orphan.detections.update(occurrence=None)  # ...but never in a project (NULL score)
    expected[projected_orphan] = 0
    marker = f.DetectionFactory(source_image=f.SourceImageFactory(event=new_event(unassigned)), null_marker=True)
    expected[marker.source_image] = 0  # null markers never count
    two = scenarios.occurrence(excluding, detections=2)
    for capture in SourceImage.objects.filter(detections__occurrence=two):
        expected[capture] = 1

    scenarios.refresh_all()

    assert {c.pk: cached(SourceImage, c, K1_FIELDS)["detections_count"] for c in expected} == {
        c.pk: n for c, n in expected.items()
    }
    for project in (strict.project, including.project, excluding.project, NO_PROJECT):
        assert invariants.violators("K1", project=project) == set()
    naive = [c for c, n in expected.items() if n == 0 and c.detections.filter(bbox__isnull=False).exists()]
    SourceImage.objects.filter(pk__in=[c.pk for c in naive]).update(detections_count=1)
    projects = (strict.project, including.project, excluding.project)
    flagged = set().union(*(invariants.violators("K1", project=p) for p in projects))
    assert flagged == {c.pk for c in naive}


@pytest.mark.covers("K1", "planted")
def test_k1_whole_table_rewrite_corrupts_other_projects_only_where_their_filters_differ(invariants):
    same = f.DeploymentFactory()  # default filters, like the empty project's
    strict = f.DeploymentFactory(project=scenarios.filtered_project(threshold=0.9))
    unassigned = f.DeploymentFactory(project=None)
    untouched = capture_of(scenarios.occurrence(same))
    still_right = capture_of(scenarios.occurrence(strict, detections__score=0.95))
    raised = capture_of(scenarios.occurrence(strict, detections__score=0.7))
    unfiltered = capture_of(scenarios.occurrence(unassigned, detections__score=0.3))
    empty_project = f.ProjectFactory()
    scenarios.refresh_all()

    scenarios.whole_table_rewrite(empty_project)

    assert invariants.violators("K1", project=same.project) == set()
    assert invariants.violators("K1", project=strict.project) == {raised.pk}
    assert invariants.violators("K1", project=NO_PROJECT) == {unfiltered.pk}
    assert cached(SourceImage, untouched, K1_FIELDS)["detections_count"] == 1
    assert cached(SourceImage, still_right, K1_FIELDS)["detections_count"] == 1


@pytest.mark.covers("K1", "scope", "repair")
def test_k1_respects_scope_and_repairs_exactly_the_violators(invariants):
    mine, other = f.DeploymentFactory(), f.DeploymentFactory()
    unassigned = f.DeploymentFactory(project=None)
    a, b = scenarios.occurrence(mine), scenarios.occurrence(mine)
    healthy = scenarios.occurrence(mine)
    theirs = scenarios.occurrence(other)
    nobody = scenarios.occurrence(unassigned)
    scenarios.refresh_all()
    for occurrence in (a, b, theirs, nobody):
        set_cached(capture_of(occurrence), detections_count=7)
    before = counts_of(SourceImage, [capture_of(healthy)], K1_FIELDS)

    assert invariants.violators("K1", project=mine.project) == {capture_of(a).pk, capture_of(b).pk}
    assert invariants.violators("K1", project=NO_PROJECT) == {capture_of(nobody).pk}
    outcome = invariants.repair("K1", project=mine.project)

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("repaired", 2, 0)
    assert cached(SourceImage, capture_of(a), K1_FIELDS)["detections_count"] == 1
    assert counts_of(SourceImage, [capture_of(healthy)], K1_FIELDS) == before
    assert cached(SourceImage, capture_of(theirs), K1_FIELDS)["detections_count"] == 7
    assert invariants.violators("K1", project=other.project) == {capture_of(theirs).pk}
    assert invariants.violators("K1", project=NO_PROJECT) == {capture_of(nobody).pk}
    assert invariants.repair("K1", project=mine.project).fixed == 0  # idempotent


def test_k1_check_mode_writes_nothing(invariants):
    station = f.DeploymentFactory()
    scenarios.occurrence(station)  # never counted: NULL
    before = invariants.snapshot()
    assert invariants.check("K1", project=station.project).violations == 1
    assert invariants.snapshot() == before


# -- K2: events -------------------------------------------------------------------------------------


@pytest.mark.covers("K2", "planted")
def test_k2_flags_exactly_the_stale_events(invariants):
    station = f.DeploymentFactory()
    low = scenarios.occurrence(station, detections__score=0.3)
    first, second = scenarios.empty_captures(station)
    healthy = scenarios.occurrence(station)
    moved_from = scenarios.empty_captures(station)[0].event
    counts_not_written = new_event(station)  # no capture, no occurrence: its counts must say 0
    scenarios.refresh_all()
    assert invariants.violators("K2", project=station.project) == set()

    scenarios.identified_without_recount(low)  # detections_count and occurrences_count
    scenarios.capture_deleted_without_recount(first)  # start and captures_count
    SourceImage.objects.filter(event=moved_from).update(event=None)  # captures moved out: captures_count
    set_cached(counts_not_written, occurrences_count=None)

    assert invariants.violators("K2", project=station.project) == {
        low.event_id, second.event_id, moved_from.pk, counts_not_written.pk
    }
    assert healthy.event_id not in invariants.violators("K2", project=station.project)


@pytest.mark.covers("K2", "planted", "near_miss")
def test_k2_counts_under_the_event_project_filters(invariants):
    genus = scenarios.genus()
    including = f.DeploymentFactory(project=scenarios.filtered_project(include=[genus], threshold=0.6))
    unassigned = f.DeploymentFactory(project=None)
    event = new_event(including)
    f.OccurrenceFactory(event=event, detections__taxon=scenarios.species_of(genus), detections=2)  # 2 + 1
    f.OccurrenceFactory(event=event, detections__taxon=genus, detections__score=0.5)  # below 0.6
    f.OccurrenceFactory(event=event)  # not in the genus
    phantom = f.OccurrenceFactory(event=event, phantom=True)  # only a null marker, but a score: counts
    type(phantom).objects.filter(pk=phantom.pk).update(determination=genus, determination_score=0.9)
    f.OccurrenceFactory(event=event, detections=0, partial_save=True)  # no score: never counts
    loose = new_event(unassigned)
    f.OccurrenceFactory(event=loose, detections__score=0.1)
    f.OccurrenceFactory(event=loose, partial_save=True)
    f.OccurrenceFactory(event=loose, detections=0)  # no detection, no score: counts without a project
    scenarios.refresh_all()

    values = cached(Event, event, K2_FIELDS)
    # 2 + 1 + 1 captures with a real detection, plus the phantom's null-marker capture
    assert (values["captures_count"], values["detections_count"], values["occurrences_count"]) == (5, 2, 2)
    values = cached(Event, loose, K2_FIELDS)
    assert (values["captures_count"], values["detections_count"], values["occurrences_count"]) == (2, 2, 3)
    assert invariants.violators("K2", project=including.project) == set()
    assert invariants.violators("K2", project=NO_PROJECT) == set()

    set_cached(event, detections_count=4, occurrences_count=5)  # what COUNT(*) would say
    assert invariants.violators("K2", project=including.project) == {event.pk}


def antenna_refreshes_the_bounds(event):
    """What update_calculated_fields_for_events writes for start and end, computed the way its code does: the
    first row by timestamp and the first by -timestamp (PostgreSQL sorts NULL last, then first), when the
    event has captures; a NULL start would break the NOT NULL column, so the row keeps its start."""
    first = event.captures.order_by("timestamp").values("timestamp").first()
    last = event.captures.order_by("-timestamp").values("timestamp").first()
    values = {}
    if first and first["timestamp"] is not None:
        values["start"] = first["timestamp"]
    if last:
        values["end"] = last["timestamp"]
    set_cached(event, **values)


@pytest.mark.covers("K2", "planted", "near_miss")
def test_k2_start_and_end_are_what_antennas_refresh_writes(invariants):
    station = f.DeploymentFactory()
    first, last = scenarios.empty_captures(station)
    event = first.event
    empty = new_event(station)  # no capture: Antenna leaves start and end alone
    untimed = f.SourceImageFactory(event=new_event(station), timestamp=None)
    partly = scenarios.empty_captures(station)[0]
    f.SourceImageFactory(event=partly.event, timestamp=None)  # one untimed capture: Antenna writes end NULL
    outside = f.SourceImageFactory(event=new_event(station))  # a capture outside the bounds (also C6)
    reversed_ = f.SourceImageFactory(event=new_event(station))  # start after end (also E1)
    scenarios.refresh_all()
    assert (cached(Event, event, K2_FIELDS)["start"], cached(Event, event, K2_FIELDS)["end"]) == (
        first.timestamp, last.timestamp
    )
    assert cached(Event, partly.event, K2_FIELDS)["end"] is None

    set_cached(empty, start=empty.start - timedelta(days=3))
    seen = outside.timestamp
    set_cached(outside.event, start=seen - timedelta(hours=2), end=seen - timedelta(minutes=5))
    set_cached(reversed_.event, end=reversed_.timestamp - timedelta(minutes=1))
    set_cached(untimed.event, end=untimed.event.start)
    set_cached(partly.event, end=partly.timestamp)
    set_cached(event, end=last.timestamp + timedelta(hours=1))  # too wide: stale
    assert invariants.violators("K2", project=station.project) == {
        event.pk, outside.event_id, reversed_.event_id, untimed.event_id, partly.event_id
    }

    for row in (event, empty, untimed.event, partly.event, outside.event, reversed_.event):
        antenna_refreshes_the_bounds(row)
    assert invariants.violators("K2", project=station.project) == set()
    set_cached(event, end=None)  # open end although the captures are known
    assert invariants.violators("K2", project=station.project) == {event.pk}


@pytest.mark.covers("K2", "scope", "repair")
def test_k2_respects_scope_and_repairs_exactly_the_violators(invariants):
    mine, other = f.DeploymentFactory(), f.DeploymentFactory()
    first, second = scenarios.empty_captures(mine)
    low = scenarios.occurrence(mine, detections__score=0.3)
    healthy = scenarios.occurrence(mine)
    theirs = scenarios.occurrence(other, detections__score=0.3)
    scenarios.refresh_all()
    scenarios.capture_deleted_without_recount(first)
    scenarios.identified_without_recount(low)
    scenarios.identified_without_recount(theirs)
    before = counts_of(Event, [healthy.event, theirs.event], [*K2_FIELDS, "calculated_fields_updated_at"])

    assert invariants.violators("K2", project=mine.project) == {second.event_id, low.event_id}
    outcome = invariants.repair("K2", project=mine.project)

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("repaired", 2, 0)
    values = cached(Event, second.event, [*K2_FIELDS, "calculated_fields_updated_at"])
    assert (values["start"], values["end"], values["captures_count"]) == (second.timestamp, second.timestamp, 1)
    assert values["calculated_fields_updated_at"] is not None
    values = cached(Event, low.event, K2_FIELDS)
    assert (values["detections_count"], values["occurrences_count"]) == (1, 1)
    assert counts_of(Event, [healthy.event, theirs.event], [*K2_FIELDS, "calculated_fields_updated_at"]) == before
    assert invariants.violators("K2", project=other.project) == {theirs.event_id}
    assert invariants.repair("K2", project=mine.project).fixed == 0  # idempotent


def test_k2_check_mode_writes_nothing(invariants):
    station = f.DeploymentFactory()
    scenarios.occurrence(station)
    before = invariants.snapshot()
    assert invariants.check("K2", project=station.project).violations == 1
    assert invariants.snapshot() == before


# -- K3: deployments --------------------------------------------------------------------------------


@pytest.mark.covers("K3", "planted")
def test_k3_flags_exactly_the_stale_deployments(invariants):
    deleted_from, identified, filtered, healthy = (f.DeploymentFactory() for _ in range(4))
    first, _ = scenarios.empty_captures(deleted_from)
    low = scenarios.occurrence(identified, detections__score=0.3)
    genus = scenarios.genus()
    scenarios.occurrence(filtered, detections__taxon=scenarios.species_of(genus))
    scenarios.occurrence(healthy)
    bare = f.DeploymentFactory(project=healthy.project)  # nothing in it: counts 0, size and timestamps NULL
    never_counted = f.DeploymentFactory(project=healthy.project)
    scenarios.refresh_all()
    assert cached(Deployment, bare, K3_FIELDS) == {
        "data_source_total_files": 0, "data_source_total_size": None, "events_count": 0, "captures_count": 0,
        "detections_count": 0, "occurrences_count": 0, "taxa_count": 0,
        "first_capture_timestamp": None, "last_capture_timestamp": None,
    }

    scenarios.capture_deleted_without_recount(first)
    scenarios.identified_without_recount(low)
    scenarios.filters_changed_without_refresh(filtered.project, exclude=[genus])
    set_cached(never_counted, taxa_count=None)

    stations = (deleted_from, identified, filtered, healthy)
    flagged = set().union(*(invariants.violators("K3", project=d.project) for d in stations))
    assert flagged == {deleted_from.pk, identified.pk, filtered.pk, never_counted.pk}


@pytest.mark.covers("K3", "planted", "near_miss")
def test_k3_counts_under_the_deployment_project_filters(invariants):
    genus = scenarios.genus()
    station = f.DeploymentFactory(project=scenarios.filtered_project(exclude=[genus]))
    unassigned = f.DeploymentFactory(project=None)
    species = scenarios.species_of(f.TaxonFactory(rank="GENUS"))
    f.OccurrenceFactory(event=new_event(station), detections__taxon=species, detections=2)
    f.OccurrenceFactory(event=new_event(station), detections__taxon=species)  # same taxon: one more, not a new taxon
    f.OccurrenceFactory(event=new_event(station), detections__taxon=scenarios.species_of(genus))  # excluded
    f.OccurrenceFactory(event=new_event(station), detections__score=0.2)  # below 0.5
    no_event = f.OccurrenceFactory(event=new_event(station))  # its detection counts, the occurrence does not
    type(no_event).objects.filter(pk=no_event.pk).update(event=None)
    phantom = f.OccurrenceFactory(event=new_event(station), phantom=True)
    type(phantom).objects.filter(pk=phantom.pk).update(determination=f.TaxonFactory(), determination_score=0.7)
    SourceImage.objects.filter(deployment=station).update(size=1000)
    f.OccurrenceFactory(event=new_event(unassigned), detections__score=0.1)
    f.OccurrenceFactory(event=new_event(unassigned), partial_save=True)  # NULL determination: one more value
    scenarios.refresh_all()

    captures = SourceImage.objects.filter(deployment=station)
    values = cached(Deployment, station, K3_FIELDS)
    assert values == {
        "data_source_total_files": 7, "data_source_total_size": 7000, "events_count": 6, "captures_count": 7,
        "detections_count": 4, "occurrences_count": 3, "taxa_count": 2,
        "first_capture_timestamp": min(c.timestamp for c in captures),
        "last_capture_timestamp": max(c.timestamp for c in captures),
    }
    values = cached(Deployment, unassigned, K3_FIELDS)
    assert (values["detections_count"], values["occurrences_count"], values["taxa_count"]) == (2, 2, 2)
    assert values["data_source_total_size"] is None  # captures without a size
    assert invariants.violators("K3", project=station.project) == set()
    assert invariants.violators("K3", project=NO_PROJECT) == set()

    set_cached(station, occurrences_count=6, taxa_count=5, detections_count=6)  # what a COUNT(*) would say
    assert invariants.violators("K3", project=station.project) == {station.pk}


def antennas_taxa_count(deployment):
    """Deployment.update_calculated_fields' formula: occ_qs.values("determination_id").distinct().count() over
    the deployment's occurrences that have an event and pass the default filters (here: the threshold)."""
    threshold = deployment.project.default_filters_score_threshold
    occurrences = Occurrence.objects.filter(deployment=deployment, event__isnull=False,
                                            determination_score__gte=threshold)
    return occurrences.values("determination_id").distinct().count()


@pytest.mark.covers("K3", "near_miss")
def test_k3_counts_a_null_determination_as_one_taxon_as_antenna_does(invariants):
    station = f.DeploymentFactory()
    shared = f.TaxonFactory()
    scenarios.occurrence(station, detections__taxon=shared)
    scenarios.occurrence(station, detections__taxon=shared)
    scenarios.occurrence(station)
    for _ in range(2):  # the determining taxon was deleted: NULL determination, the score stays (also D4)
        lost = scenarios.occurrence(station)
        Occurrence.objects.filter(pk=lost.pk).update(determination=None)
    scenarios.occurrence(station, partial_save=True)  # NULL score: filtered out
    scenarios.refresh_all()  # every other count true
    set_cached(station, taxa_count=antennas_taxa_count(station))  # Antenna's own refresh

    assert antennas_taxa_count(station) == 3  # shared, the other taxon, and NULL once
    assert invariants.violators("K3", project=station.project) == set()
    assert scenarios.refresh_all() == 0  # the recount writes what Antenna wrote


@pytest.mark.covers("K3", "scope", "repair")
def test_k3_respects_scope_and_repairs_exactly_the_violators(invariants):
    mine, other = f.DeploymentFactory(), f.DeploymentFactory()
    healthy = f.DeploymentFactory(project=mine.project)
    first, second = scenarios.empty_captures(mine)
    scenarios.occurrence(healthy)
    theirs, _ = scenarios.empty_captures(other)
    scenarios.refresh_all()
    scenarios.capture_deleted_without_recount(first)
    scenarios.capture_deleted_without_recount(theirs)
    before = counts_of(Deployment, [healthy, other], K3_FIELDS)

    assert invariants.violators("K3", project=mine.project) == {mine.pk}
    outcome = invariants.repair("K3", project=mine.project)

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("repaired", 1, 0)
    values = cached(Deployment, mine, K3_FIELDS)
    assert (values["captures_count"], values["data_source_total_files"], values["first_capture_timestamp"]) == (
        1, 1, second.timestamp
    )
    assert counts_of(Deployment, [healthy, other], K3_FIELDS) == before
    assert invariants.violators("K3", project=other.project) == {other.pk}
    assert invariants.repair("K3", project=mine.project).fixed == 0  # idempotent


def test_k3_check_mode_writes_nothing(invariants):
    station = f.DeploymentFactory()
    scenarios.occurrence(station)
    before = invariants.snapshot()
    assert invariants.check("K3", project=station.project).violations == 1
    assert invariants.snapshot() == before


# -- all three -------------------------------------------------------------------------------------


def test_refresh_all_leaves_nothing_stale_and_is_idempotent(invariants):
    for deployment in (f.DeploymentFactory(), f.DeploymentFactory(project=None)):
        scenarios.occurrence(deployment)
        scenarios.empty_captures(deployment)
    assert scenarios.refresh_all() > 0
    assert scenarios.refresh_all() == 0
    for rule in ("K1", "K2", "K3"):
        assert invariants.check(rule).violations == 0


def test_plant_stale_plants_exactly_what_it_says(invariants):
    station = f.DeploymentFactory()
    scenarios.occurrence(station)
    scenarios.refresh_all()
    planted = scenarios.plant_stale(station)
    assert invariants.violators("K1") == {c.pk for c in planted["K1"]}
    assert invariants.violators("K2") == {e.pk for e in planted["K2"]}
    assert invariants.violators("K3") == {d.pk for d in planted["K3"]}
