"""Operations, end to end (`pytest invariants …` in a subprocess): snapshots of Antenna backups, incremental runs,
a standby cancelling queries, parallel runs, and option values that try to reach SQL."""

import gzip
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from datetime import datetime

import psycopg
import pytest
from django.db import connection

from antenna_invariants.connection import ROOT, url_for
from antenna_invariants.mirror import models as m
from antenna_invariants.snapshot import client
from conftest import create_database_from_schema, drop_database
from fixtures import factories as f
from fixtures.scenarios import events, occurrences

pytestmark = pytest.mark.django_db(transaction=True, available_apps=["antenna_invariants.mirror"])
LONG_AGO = datetime(2020, 1, 1)


def _databases() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE 'antenna_snapshot_%%'")
        return {name for (name,) in cursor.fetchall()}


def _drop_snapshot(name: str):
    """A kept scratch database and the role that owns it."""
    drop_database(connection.settings_dict, name)
    with psycopg.connect(url_for(connection.settings_dict, "postgres"), autocommit=True) as admin:
        admin.execute(f'DROP ROLE IF EXISTS "{name}"')


@pytest.fixture
def backups(antenna_schema, tmp_path):
    """A database built from Antenna's schema.sql with a partial save in it, dumped as Antenna's backup script
    does (plain pg_dump, gzipped) and in custom format; yields (paths, project id, occurrence id)."""
    settings = connection.settings_dict
    original, source = settings["NAME"], settings["NAME"] + "_backup"
    create_database_from_schema(settings, source, antenna_schema)
    try:
        connection.close()
        settings["NAME"] = source
        partial = occurrences.partial_save(f.DeploymentFactory())
        connection.close()
        settings["NAME"] = original
        env = {"PGPASSWORD": settings.get("PASSWORD") or ""}
        url = url_for(settings | {"PASSWORD": ""}, source)
        plain = subprocess.run([client("pg_dump"), "-d", url], capture_output=True, check=True, env=env).stdout
        (tmp_path / "antenna.sql.gz").write_bytes(gzip.compress(plain))
        subprocess.run([client("pg_dump"), "-Fc", "-d", url, "-f", tmp_path / "antenna.dump"], check=True, env=env)
    finally:
        connection.close()
        settings["NAME"] = original
        drop_database(settings, source)
    return {"gzip": tmp_path / "antenna.sql.gz", "custom": tmp_path / "antenna.dump"}, partial.project_id, partial.pk


@pytest.mark.parametrize(("kind", "keep"), [("gzip", False), ("custom", True)])
def test_snapshot_is_restored_checked_and_dropped(run, backups, kind, keep):
    paths, project, partial = backups
    before = _databases()

    code, output = run("--snapshot", str(paths[kind]), "-k", "D1", *(["--keep-snapshot"] if keep else []))

    assert code == 1, output
    assert f"SNAPSHOT {str(paths[kind])!r} restored into 'antenna_snapshot_" in output
    d1 = run.results()[("D1", f"project{project}")]
    assert (d1["violations"], d1["sample"]) == (1, [partial])
    name = re.search(r"snapshot database (antenna_snapshot_[0-9a-f]+)", output)[1]
    try:
        assert (name in _databases()) == keep
        assert name not in before
        if keep:
            assert "kept: " in output
    finally:
        _drop_snapshot(name)


def test_repair_on_a_snapshot_writes_only_the_snapshot(run, backups, invariants):
    paths, project, partial = backups
    before = invariants.snapshot()

    code, output = run("--snapshot", str(paths["custom"]), "--repair", f"--project={project}", "-k", "D1",
                       "--keep-snapshot")

    name = re.search(r"snapshot database (antenna_snapshot_[0-9a-f]+)", output)[1]
    try:
        assert code == 0, output
        assert run.results()[("D1", f"project{project}")]["status"] == "repaired"
        with psycopg.connect(url_for(connection.settings_dict, name)) as repaired:
            (determination,) = repaired.execute(
                "SELECT determination_id FROM main_occurrence WHERE id = %s", [partial]).fetchone()
        assert determination is not None
        assert invariants.snapshot() == before  # the self-test database is untouched
    finally:
        _drop_snapshot(name)


def test_since_checks_rows_changed_since_and_runs_the_others_in_full(run):
    station = f.DeploymentFactory()
    old, new = events.event_ending_before_it_starts(station), events.event_ending_before_it_starts(station)
    m.Event.objects.filter(pk=old.pk).update(created_at=LONG_AGO, updated_at=LONG_AGO)
    partial = occurrences.partial_save(station)
    m.Occurrence.objects.filter(pk=partial.pk).update(created_at=LONG_AGO, updated_at=LONG_AGO)
    project = f"--project={station.project_id}"

    code, output = run("--since", "24h", "-k", "E1 or D1", project)

    assert code == 1, output
    found = run.results()
    assert found[("E1", f"project{station.project_id}")]["sample"] == [new.pk]  # the old one is not reported
    assert found[("D1", f"project{station.project_id}")]["sample"] == [partial.pk]  # D1 runs in full
    assert re.search(r"cannot be incremental and run in full: .*\bD1\b", output), output
    assert "E1," not in output.split("run in full:")[1].splitlines()[0]
    run_record = json.loads((run.reports / "invariants.json").read_text())["run"]
    assert run_record["since"]
    assert "D1" in run_record["in_full"]
    assert "E1" not in run_record["in_full"]

    code, output = run("--since", "2019-12-31", "-k", "E1", project)
    assert code == 1, output
    assert run.results()[("E1", f"project{station.project_id}")]["sample"] == sorted([old.pk, new.pk])


@pytest.mark.parametrize(("conflicts", "status"), [(2, "failed"), (4, "error")])
def test_a_query_the_standby_cancels_is_retried_then_an_error_of_that_rule_only(run, conflicts, status):
    station = f.DeploymentFactory()
    occurrences.partial_save(station)
    project = station.project_id

    code, output = run(
        "-k", "D1 or F1", f"--project={project}", "-p", "plugins.recovery",
        env={"INVARIANTS_RECOVERY_CONFLICT": f"D1:{conflicts}", "PYTHONPATH": str(ROOT / "tests")},
    )

    assert code == 1, output
    found = run.results()
    assert found[("D1", f"project{project}")]["status"] == status
    assert found[("F1", f"project{project}")]["status"] == "passed"
    if status == "error":
        assert "D1 could not run: cancelled by the standby (conflict with recovery) 4 times" in output
    else:
        assert found[("D1", f"project{project}")]["violations"] == 1


def test_parallel_run_reports_every_case_exactly_once(run):
    stations = [f.DeploymentFactory() for _ in range(2)]
    for station in stations:
        occurrences.partial_save(station)

    code, output = run("-n", "2", "-m", "occurrences or events")
    serial_code, _ = run("-m", "occurrences or events")
    serial = json.loads((run.reports / "invariants.json").read_text())["results"]
    code_again, _ = run("-n", "2", "-m", "occurrences or events")
    parallel = json.loads((run.reports / "invariants.json").read_text())["results"]

    assert code == serial_code == code_again == 1, output
    keys = [(r["rule"], r["project"]) for r in parallel]
    assert len(keys) == len(set(keys))
    assert keys == sorted(keys)
    assert keys == [(r["rule"], r["project"]) for r in serial]
    assert [r["violations"] for r in parallel] == [r["violations"] for r in serial]
    cases = [c.get("name") for c in ET.parse(run.reports / "junit.xml").getroot().iter("testcase")]
    assert len(cases) == len(set(cases)) == len(keys)


def test_a_full_run_checks_each_rule_once_for_the_cases_it_selected(run, tmp_path):
    stations = [f.DeploymentFactory() for _ in range(2)]
    for station in stations:
        occurrences.partial_save(station)
    mine, other = (s.project_id for s in stations)
    spy = {"INVARIANTS_SPY": str(tmp_path / "spy"), "PYTHONPATH": str(ROOT / "tests")}

    code, output = run("-m", "D1 or F1", "-p", "plugins.spy", env=spy)
    every = [f"project{p}" for p in m.Project.objects.order_by("pk").values_list("pk", flat=True)] + ["noproject"]
    assert code == 1, output
    # F1 before D1: the run takes the rules in dependency order (rules.RUN_ORDER)
    assert (tmp_path / "spy").read_text().splitlines() == [f"F1 {' '.join(every)}", f"D1 {' '.join(every)}"]
    assert {key: r["violations"] for key, r in run.results().items() if r["violations"]} == {
        ("D1", f"project{mine}"): 1, ("D1", f"project{other}"): 1}

    (tmp_path / "spy").unlink()
    code, output = run("-k", f"D1-project{other} or D1-noproject", "-p", "plugins.spy", env=spy)
    assert code == 1, output
    assert (tmp_path / "spy").read_text().splitlines() == [f"D1 project{other} noproject"]
    assert sorted(run.results()) == [("D1", "noproject"), ("D1", f"project{other}")]

    (tmp_path / "spy").unlink()  # under xdist, each rule's cases go to one worker: still one statement a rule
    code, output = run("-m", "D1 or F1", "-n", "2", "-p", "plugins.spy", env=spy)
    assert code == 1, output
    assert sorted((tmp_path / "spy").read_text().splitlines()) == [f"D1 {' '.join(every)}", f"F1 {' '.join(every)}"]
    assert len(run.results()) == 2 * len(every)


INJECTIONS = [
    ["--project", "1;DROP TABLE main_project"],
    ["--project", "1 OR 1=1"],
    ["--job", "1); DELETE FROM main_occurrence; --"],
    ["--occurrence", "1 UNION SELECT id FROM users_user"],
    ["--sample-size", "1; DROP TABLE main_project"],
    ["--repair-limit", "1; DROP TABLE main_project", "--repair", "--all-projects"],
    ["--statement-timeout", "0; DROP TABLE main_project"],
    ["--statement-timeout", "5min -c default_transaction_read_only=off"],
    ["--since", "2026-11-01'; DROP TABLE main_project; --"],
    ["--antenna-url", "https://x.org\"><script>alert(1)</script>"],
    ["--sample-columns", "id; DROP TABLE main_project"],
    ["--baseline", "x'; DROP TABLE main_project; --"],
    ["--compare", "x'; DROP TABLE main_project; --"],
    ["--snapshot", "x.sql; psql -c 'DROP TABLE main_project'"],
    ["-o", "invariants_error_if=D1 >1; DROP TABLE main_project"],
    ["-o", "invariants_repair_max_share=10%; DROP TABLE main_project"],
]


@pytest.mark.parametrize("args", INJECTIONS, ids=[" ".join(a[:2]) for a in INJECTIONS])
def test_injection_in_an_option_is_refused_and_changes_nothing(run, invariants, args):
    occurrences.partial_save(f.DeploymentFactory())
    before = invariants.snapshot()

    code, output = run(*args)

    assert code == 4, output
    assert [line for line in output.splitlines() if line.startswith("ERROR:")], output
    assert "Traceback" not in output
    assert invariants.snapshot() == before
