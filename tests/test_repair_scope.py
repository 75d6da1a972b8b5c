"""Scope means scope: a --project or --job repair writes only rows of that scope.  Global tables (taxa,
algorithms) belong to every project: they are checked and reported in a scoped repair run, and repaired only
with --all-projects."""

import pytest
from django.db import connection

from fixtures import factories as f
from fixtures.scenarios import taxa

pytestmark = pytest.mark.django_db(transaction=True, available_apps=["antenna_invariants.mirror"])


def checksum(table: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT md5(string_agg(to_jsonb(t)::text, ',' ORDER BY t.id)) FROM {table} t")
        return cursor.fetchone()[0]


@pytest.mark.covers("K4", "scope")
def test_a_scoped_repair_reports_a_global_rule_and_leaves_its_table_alone(run, invariants):
    station = f.DeploymentFactory()
    job = f.JobFactory(project=station.project, deployment=station)
    genus, species = taxa.reparented_genus()
    before = checksum("main_taxon")

    for scope in (f"--project={station.project_id}", f"--job={job.pk}"):
        code, output = run("--repair", scope, "-m", "K4")

        assert code == 1, output
        assert checksum("main_taxon") == before, scope
        assert "not repaired: K4's table is global and this repair run is scoped" in output
        assert "pytest invariants -m K4 --repair --all-projects" in output
        k4 = run.results()["K4", "global"]
        assert (k4["status"], k4["violations"], k4["fixed"], k4["remaining"]) == ("failed", 2, 0, None)

    code, output = run("--repair", "--all-projects", "-m", "K4")

    assert code == 0, output
    assert checksum("main_taxon") != before
    assert invariants.violators("K4") == set()
    assert run.results()["K4", "global"]["fixed"] == 2


@pytest.mark.covers("T2", "scope")
@pytest.mark.covers("TL1", "scope")
def test_a_scoped_repair_leaves_the_other_global_tables_alone(run):
    station = f.DeploymentFactory()
    taxa.species_under_a_tribe()
    taxa.duplicate_global_lists()
    before = {table: checksum(table) for table in ("main_taxon", "main_taxalist")}

    code, output = run("--repair", f"--project={station.project_id}", "-m", "T2 or TL1")

    assert code == 1, output
    assert {table: checksum(table) for table in before} == before
    for rule_id in ("T2", "TL1"):
        assert f"not repaired: {rule_id}'s table is global and this repair run is scoped" in output
        result = run.results()[rule_id, "global"]
        assert (result["status"], result["violations"], result["fixed"]) == ("failed", 1, 0)
