"""X1 (a deployment's site, device and storage source are its project's or shared) and X2 (a synced capture
lies in its deployment's storage subdir and matches its simple regex)."""

import pytest

from antenna_invariants.rules import RULES
from antenna_invariants.scope import NO_PROJECT
from fixtures import factories as f
from fixtures.scenarios import deployments as scenarios


@pytest.mark.covers("X1", "planted", "near_miss")
def test_x1_flags_foreign_links_and_none_of_the_near_misses(invariants):
    project = f.ProjectFactory()
    planted = [
        scenarios.deployment_on_another_projects_site(f.DeploymentFactory(project=project)),
        scenarios.deployment_on_another_projects_device(f.DeploymentFactory(project=project)),
        scenarios.deployment_on_another_projects_storage(f.DeploymentFactory(project=project)),
    ]
    near_miss = scenarios.deployments_with_their_own_or_shared_links(f.DeploymentFactory(project=project))
    bare = f.DeploymentFactory(project=project)

    assert invariants.violators("X1", project=project) == {d.pk for d in planted}
    assert not {near_miss.pk, bare.pk} & invariants.violators("X1", project=project)


@pytest.mark.covers("X1", "planted")
def test_x1_flags_a_deployment_without_project_linked_to_a_projects_site(invariants):
    unassigned = scenarios.deployment_on_another_projects_site(f.DeploymentFactory(project=None))
    assert invariants.violators("X1", project=NO_PROJECT) == {unassigned.pk}


@pytest.mark.covers("X1", "scope")
def test_x1_respects_scope_and_check_writes_nothing(invariants):
    invariants.assert_scoped("X1", scenarios.deployment_on_another_projects_device)
    invariants.assert_check_writes_nothing("X1", scenarios.deployment_on_another_projects_storage)
    assert RULES["X1"].repair_func is None


@pytest.mark.covers("X2", "planted", "near_miss")
def test_x2_flags_synced_captures_outside_their_source(invariants):
    project = f.ProjectFactory()
    planted = [scenarios.capture_outside_the_subdir(f.DeploymentFactory(project=project)),
               scenarios.capture_not_matching_the_regex(f.DeploymentFactory(project=project))]
    near_misses = scenarios.captures_inside_their_source(f.DeploymentFactory(project=project))
    unsynced = f.SourceImageFactory(event__deployment=f.DeploymentFactory(project=project))  # no data source

    assert invariants.violators("X2", project=project) == {c.pk for c in planted}
    assert not {c.pk for c in [*near_misses, unsynced]} & invariants.violators("X2", project=project)


@pytest.mark.covers("X2", "scope")
def test_x2_respects_scope_and_check_writes_nothing(invariants):
    invariants.assert_scoped("X2", scenarios.capture_outside_the_subdir)
    invariants.assert_check_writes_nothing("X2", scenarios.capture_not_matching_the_regex)
    assert RULES["X2"].repair_func is None
