"""Shared scans (antenna_invariants.shared): rules checked together on one computation report, rule by rule and
project by project, exactly what each rule's own grouped check reports."""

import pytest

from antenna_invariants import check, rules, runchecks, shared
from antenna_invariants.layout import load_rules
from antenna_invariants.mirror.models import Project
from antenna_invariants.scope import NO_PROJECT, Scope

FIELDS = ("violations", "checked", "sample", "status", "sql", "message")


def every_scope():
    return [Scope(project=p) for p in [*Project.objects.order_by("pk").values_list("pk", flat=True), NO_PROJECT]]


@pytest.fixture
def demo(db):
    from fixtures.demo import build

    load_rules()
    build()


def scans():
    load_rules()
    return list({scan.name: scan for scan in shared.SCANS.values()}.values())


def test_the_expected_determination_and_the_recounts_are_shared():
    assert {scan.name: scan.members for scan in scans()} == {
        "the expected determination": ("D2", "D3", "D4"), "the recounts": ("K1", "K2", "K3")}


@pytest.mark.parametrize("scan", scans(), ids=lambda scan: scan.name)
def test_a_shared_scan_reports_each_rule_as_its_own_grouped_check(demo, scan):
    scopes = every_scope()
    together = shared.check_scan(scan, scopes, sample_size=3)
    failing = 0
    for rule in scan.members:
        alone = check.check_grouped(rules.RULES[rule], scopes, sample_size=3)
        assert sorted(together[rule]) == sorted(alone)
        for label, outcome in alone.items():
            assert [getattr(together[rule][label], k) for k in FIELDS] == [getattr(outcome, k) for k in FIELDS], (
                rule, label)
            failing += outcome.violations > 0
    assert failing >= len(scan.members)  # the demo violates every member somewhere


@pytest.mark.parametrize("scan", scans(), ids=lambda scan: scan.name)
@pytest.mark.parametrize("which", ["one project", "no project", "two projects"])
def test_a_run_scoped_to_some_projects_shares_as_well(demo, scan, which):
    """The scan reads only those projects' rows, and for the recounts every capture and occurrence of their
    events and deployments, whichever project those lie in."""
    first, second = Project.objects.order_by("pk").values_list("pk", flat=True)[:2]
    scopes = {"one project": [Scope(project=first)], "no project": [Scope(project=NO_PROJECT)],
              "two projects": [Scope(project=second), Scope(project=first)]}[which]
    together = shared.check_scan(scan, scopes, sample_size=3)
    for rule in scan.members:
        alone = check.check_grouped(rules.RULES[rule], scopes, sample_size=3)
        assert {label: [getattr(o, k) for k in FIELDS] for label, o in together[rule].items()} == {
            label: [getattr(o, k) for k in FIELDS] for label, o in alone.items()}, rule


def test_a_run_scans_once_for_all_members_and_again_after_a_repair(demo, monkeypatch):
    calls = []
    real = shared.check_scan
    monkeypatch.setattr(shared, "check_scan", lambda scan, *a, **k: calls.append(scan.name) or real(scan, *a, **k))
    checks, scopes = runchecks.Checks(sample_size=3), every_scope()
    for rule in ("D2", "D3", "D4", "K1", "K2", "K3"):
        outcomes = [checks.take(rules.RULES[rule], s, scopes) for s in scopes]
        assert [o.rule for o in outcomes] == [rule] * len(scopes)
    assert calls == ["the expected determination", "the recounts"]

    checks = runchecks.Checks(sample_size=3)
    checks.take(rules.RULES["D2"], scopes[0], scopes)
    checks.forget_counts()  # what a repair of D2 does first: D3 and D4 must see its changes
    checks.take(rules.RULES["D3"], scopes[0], scopes)
    assert calls[2:] == ["the expected determination"] * 2


def test_the_recounts_apply_each_rows_own_project_filters_include_and_exclude_taxa(db):
    """The shared recount reads a project's filter settings once per project (filters.PROJECT_FILTERS): it
    must agree with K1-K3's own recounts under include taxa, exclude taxa and thresholds, for a capture whose
    project is not its deployment's."""
    from fixtures import factories as f
    from fixtures.scenarios import counts

    load_rules()
    included, excluded = counts.genus(), counts.genus()
    picky = f.DeploymentFactory(project=counts.filtered_project(threshold=0.6, include=[included]))
    shy = f.DeploymentFactory(project=counts.filtered_project(threshold=0.2, exclude=[excluded]))
    for station in (picky, shy):
        for genus in (included, excluded):
            counts.occurrence(station, detections__taxon=counts.species_of(genus), detections__score=0.7)
        counts.occurrence(station, detections__score=0.4)
    stray = counts.occurrence(picky, detections__score=0.9).detections.get().source_image
    stray.project = shy.project  # a capture of another project than its deployment's (C1): its own filters count
    stray.save()
    counts.refresh_all()
    counts.filters_changed_without_refresh(picky.project, include=[excluded])
    counts.filters_changed_without_refresh(shy.project, threshold=0.5, exclude=[included])

    assert all(recounted(every_scope()).values())  # every rule has stale rows here
    recounted([Scope(project=picky.project_id)])
    recounted([Scope(project=shy.project_id)])


def recounted(scopes):
    """Compare the shared recount with each rule's own; the violations each rule found."""
    together, found = shared.check_scan(shared.SCANS["K1"], scopes, sample_size=0), {}
    for rule in ("K1", "K2", "K3"):
        alone = check.check_grouped(rules.RULES[rule], scopes, sample_size=0)
        assert {label: [getattr(o, k) for k in FIELDS] for label, o in together[rule].items()} == {
            label: [getattr(o, k) for k in FIELDS] for label, o in alone.items()}, rule
        found[rule] = sum(o.violations for o in alone.values())
    return found
