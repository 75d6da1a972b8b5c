"""End to end: `pytest invariants ...` in a subprocess against a committed self-test database."""

import xml.etree.ElementTree as ET

import pytest
from django.db import connection

from antenna_invariants.mirror.models import Occurrence
from fixtures import factories as f
from fixtures.scenarios import occurrences

pytestmark = pytest.mark.django_db(transaction=True, available_apps=["antenna_invariants.mirror"])


def test_check_reports_every_rule_per_project_and_writes_nothing(run, invariants):
    station = f.DeploymentFactory()
    partial = occurrences.partial_save(station)
    occurrences.phantom_occurrence(f.DeploymentFactory(project=None))
    before = invariants.snapshot()

    code, output = run()

    assert code == 1, output
    assert "live database" in output
    assert "mode: check (read-only)" in output
    assert invariants.snapshot() == before
    d1 = run.results()[("D1", f"project{station.project_id}")]
    assert (d1["status"], d1["violations"], d1["sample"], d1["fixed"]) == ("failed", 1, [partial.pk], 0)
    assert d1["sql"].startswith("SELECT")
    assert d1["duration"] >= 0
    assert run.results()[("F1", "noproject")]["status"] == "failed"
    cases = ET.parse(run.reports / "junit.xml").getroot().iter("testcase")
    names = {c.get("name") for c in cases}
    assert f"test_occurrence_with_evidence_has_a_determination[D1-project{station.project_id}]" in names
    assert "test_occurrence_has_a_real_detection[F1-noproject]" in names
    assert (run.reports / "report.html").stat().st_size > 0


def test_repair_fixes_exactly_the_scope_and_says_repaired(run, invariants):
    mine, theirs = f.DeploymentFactory(), f.DeploymentFactory()
    partial = occurrences.partial_save(mine)
    phantom = occurrences.phantom_occurrence(mine, identified=True)
    untouched = occurrences.partial_save(theirs)

    code, output = run("--repair", f"--project={mine.project_id}", "-m", "D1 or F1", "-v")

    assert code == 0, output
    assert "REPAIRED" in output
    assert "fixed 1, unfixable 0" in output
    assert "1 delete main_identification" in output  # the cascade is shown, not hidden in the count
    found = run.results()
    assert found[("D1", f"project{mine.project_id}")]["status"] == "repaired"
    assert found[("F1", f"project{mine.project_id}")]["fixed"] == 1
    assert set(found) == {("D1", f"project{mine.project_id}"), ("F1", f"project{mine.project_id}")}
    assert Occurrence.objects.get(pk=partial.pk).determination_id is not None
    assert not Occurrence.objects.filter(pk=phantom.pk).exists()
    assert Occurrence.objects.get(pk=untouched.pk).determination_id is None
    journals = sorted(run.reports.glob("journal-*.jsonl"))
    assert journals

    assert run(f"--project={mine.project_id}", "-m", "D1 or F1")[0] == 0
    code, output = run(str(journals[0]), module=("-m", "antenna_invariants", "undo"))
    assert code == 0, output
    assert "restored: 1 insert main_identification, 1 insert main_occurrence, 1 update main_detection, " in output
    assert Occurrence.objects.filter(pk=phantom.pk).exists()
    assert Occurrence.objects.get(pk=partial.pk).determination_id is None
    code, output = run(str(journals[0]), module=("-m", "antenna_invariants", "undo"))
    assert (code, "restored: nothing") == (0, output.split(";")[0]), output  # undone already: nothing to do


def test_repair_is_refused_on_a_read_only_database(run):
    station = f.DeploymentFactory()
    occurrences.partial_save(station)
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    try:
        code, output = run("--repair", f"--project={station.project_id}")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    assert code == 4, output
    assert "--repair refused: the database is read-only" in output


def test_schema_drift_stops_the_run_before_any_rule(run):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE main_detection RENAME COLUMN path TO path_renamed")
    try:
        code, output = run()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE main_detection RENAME COLUMN path_renamed TO path")
    assert code == 4, output
    assert "ERROR: schema drift: column main_detection.path is missing" in output
    assert "Traceback" not in output


def test_selection_by_keyword_and_marker_under_xdist(run):
    station = f.DeploymentFactory()
    occurrences.partial_save(station)

    code, output = run("-k", "D1", "-n", "2", f"--project={station.project_id}")

    assert code == 1, output
    assert set(run.results()) == {("D1", f"project{station.project_id}")}
    code, output = run("-m", "occurrences", f"--project={station.project_id}", "--co", "-q")
    assert code == 0, output
    assert "D1-project" in output
    assert "N6-project" not in output


def test_a_clean_database_passes(run):
    f.OccurrenceFactory()
    code, output = run("-m", "D1 or F1 or N6")
    assert code == 0, output


def test_soft_rules_warn_and_fail_only_under_strict(run):
    from fixtures.scenarios import detections

    station = f.DeploymentFactory()
    detections.malformed_bbox(station, [300, 300, 100, 100])  # N5b, a soft rule

    code, output = run("-k", "N5b", f"--project={station.project_id}", "-v")
    assert code == 0, output
    assert "WARN" in output
    assert "1 warned" in output
    assert run.results()[("N5b", f"project{station.project_id}")]["status"] == "warned"

    code, output = run("-k", "N5b", f"--project={station.project_id}", "--strict")
    assert code == 1, output
    assert "N5b" in output
    assert "1 violating detections" in output


def test_thresholds_from_the_ini_tolerate_an_amount_and_show_both_numbers(run):
    station = f.DeploymentFactory()
    for _ in range(2):
        occurrences.partial_save(station)
    f.OccurrenceFactory(event__deployment=station)
    project = f"--project={station.project_id}"

    code, output = run("-k", "D1", project, "-o", "invariants_error_if=D1 >2")
    assert code == 0, output  # within error_if, beyond warn_if (default >0): a warning, as in dbt
    record = run.results()[("D1", f"project{station.project_id}")]
    assert (record["status"], record["threshold"]) == ("warned", "error_if >2")
    code, output = run("-k", "D1", project, "-o", "invariants_error_if=D1 >2", "-o", "invariants_warn_if=D1 >5")
    assert code == 0, output
    assert run.results()[("D1", f"project{station.project_id}")]["status"] == "passed", output
    assert "TOLERATED D1" in output  # within both: tolerated, and still shown
    code, output = run("-k", "D1", project, "-o", "invariants_error_if=D1 >70%")  # 2 of 3 is 67 %
    assert code == 0, output
    assert run("-k", "D1", project, "-o", "invariants_error_if=D1 >60%")[0] == 1
    code, output = run("-k", "D1", project, "-o", "invariants_error_if=D1 >1")
    assert code == 1, output
    assert "2 violating occurrences of 3 checked (error_if >1)" in output
    code, output = run("-k", "D1", project, "-o", "invariants_error_if=D9 >1")
    assert code == 4, output
    assert "ERROR: invariants_error_if: no rule 'D9'" in output, output
    code, output = run("-k", "D1", project, "-o", "invariants_error_if=D1 1%")
    assert code == 4, output
    assert "is not a threshold" in output, output


def test_severity_from_the_ini_and_selection_by_severity_repair_and_risk(run):
    station = f.DeploymentFactory()
    occurrences.partial_save(station)  # D1: severity error, repairable, risk medium
    project = f"--project={station.project_id}"

    code, output = run("-m", "D1", project, "-o", "invariants_severity=D1 warn")
    assert code == 0, output
    assert run.results()[("D1", f"project{station.project_id}")]["severity"] == "warn", output
    code, output = run("-m", "warn", project, "-o", "invariants_severity=D1 warn")
    assert ("D1", f"project{station.project_id}") in run.results(), output
    code, output = run("-m", "error and repairable and risk_medium", project)
    rules = {rule for rule, _ in run.results()}
    assert code == 1, output
    assert "D1" in rules, output
    assert "F1" not in rules, output
    assert "D6" not in rules, output  # F1: high; D6: none
    code, output = run("-m", "D1", project, "-o", "invariants_severity=D1 loud")
    assert code == 4, output
    assert "ERROR: invariants_severity: 'loud' is not warn or error" in output, output


def test_a_project_run_leaves_global_rules_out_unless_asked(run):
    from antenna_invariants.layout import load_rules
    from antenna_invariants.rules import RULES

    load_rules()
    global_rules = {r.id for r in RULES.values() if r.is_global}
    station = f.DeploymentFactory()
    code, output = run(f"--project={station.project_id}", "-m", "taxa or D1")
    assert code == 0, output
    assert f"global rules left out of this --project run: {', '.join(sorted(global_rules))} (add -m global" in output
    assert {rule for rule, _ in run.results()} == {"D1"}
    code, output = run(f"--project={station.project_id}", "-m", "global")
    assert {rule for rule, _ in run.results()} == global_rules >= {"K4", "K4b"}, output


def test_the_job_log_retention_age_comes_from_the_ini(run):
    from fixtures.scenarios import jobs

    station = f.DeploymentFactory()
    jobs.recent_job_logs(station)  # 2 and 89 days old
    project = f"--project={station.project_id}"

    assert run("-m", "JL1", project)[0] == 0  # the default: 90 days
    code, output = run("-m", "JL1", project, "-o", "invariants_joblog_max_age=30d")
    assert code == 1, output
    assert "1 violating" in output, output


@pytest.mark.parametrize(("stop", "code"), [("interrupt", 2), ("crash", 3)])
def test_an_interrupted_run_exits_2_an_internal_error_3_and_neither_claims_all_clear(run, stop, code):
    from antenna_invariants.connection import ROOT

    f.OccurrenceFactory()  # a clean database: every case would pass

    exit_code, output = run("-m", "D1 or F1", "-p", "plugins.stop",
                            env={"INVARIANTS_STOP": stop, "PYTHONPATH": str(ROOT / "tests")})

    assert exit_code == code, output
    assert "NO VIOLATIONS REMAIN" not in output, output
    assert "NO FAILING VIOLATIONS" not in output, output
