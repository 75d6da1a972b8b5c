"""Reports people act on: invariants.json, JUnit (against an XSD), the HTML in a real browser, baseline and
trend, and no secret in any of them.  End to end, like test_cli.py: `pytest invariants` in a subprocess."""

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from browser import browser  # noqa: F401  (fixture)
from django.db import connection

from antenna_invariants import runinfo
from antenna_invariants.connection import ROOT, url_for
from fixtures import factories as f
from fixtures.scenarios import occurrences

pytestmark = pytest.mark.django_db(transaction=True, available_apps=["antenna_invariants.mirror"])
XSD = Path(__file__).parent / "schemas" / "junit-xunit1.xsd"
JENKINS_XSD = Path(__file__).parent / "schemas" / "junit-10.xsd"  # Jenkins xunit-plugin's newest
PASSWORD = "S3cr3t-pa55word"
CI_TOKEN = "ci-t0ken-42"


def document(reports: Path) -> dict:
    return json.loads((reports / "invariants.json").read_text())


def test_json_junit_and_html_say_what_broke_where_and_what_to_do(run, browser):  # noqa: F811
    station = f.DeploymentFactory()
    partial = occurrences.partial_save(station)
    project = f"project{station.project_id}"

    code, output = run("-m", "D1 or F1", "--antenna-url", "https://antenna.example.org")

    assert code == 1, output
    doc = document(run.reports)
    assert doc["schema_version"] == 2
    assert doc["violations_remain"] is True
    meta = doc["run"]
    assert meta["database"]["name"] == connection.settings_dict["NAME"]
    assert meta["mode"] == "check"
    assert meta["scope"].startswith("all projects")
    assert meta["duration"] > 0
    assert meta["started"]
    assert meta["provenance"]["mirror_schema_revision"] == runinfo.schema_revision() != "unknown"
    assert meta["provenance"]["django"] == __import__("django").__version__
    assert f"mirrored Antenna schema {runinfo.schema_revision()}" in output  # the terminal header
    d1 = run.results()[("D1", project)]
    assert (d1["status"], d1["violations"], d1["sample"], d1["fails_run"]) == ("failed", 1, [partial.pk], True)
    assert doc["totals"]["failing"] == sum(r["fails_run"] for r in doc["results"]) >= 1
    assert "FAILED    D1    occurrence with evidence has a determination error" in output  # the ranked table
    assert f"repair (journaled, undoable): pytest invariants -m D1 --project {station.project_id} --repair" in output
    assert "repair DELETES the violating occurrences" not in output  # F1 holds here
    assert any(line.startswith("VIOLATIONS REMAIN: ") for line in output.splitlines())
    assert (d1["title"], d1["table"], d1["risk"], d1["docs"]) == (
        "occurrence with evidence has a determination", "main_occurrence", "medium", "docs/invariants.md#d1")
    # a passing case is its counts only; the rule's fields and its SQL over every project are given once
    f1 = run.results()[("F1", project)]
    assert f1 == {"rule": "F1", "project": project, "status": "passed", "fails_run": False, "violations": 0,
                  "checked": f1["checked"]}
    assert set(doc["rules"]) == {"D1", "F1"}
    rule = doc["rules"]["D1"]
    assert {k: rule[k] for k in ("title", "table", "risk", "docs", "severity")} == {
        "title": d1["title"], "table": d1["table"], "risk": d1["risk"], "docs": d1["docs"], "severity": "error"}
    assert rule["sql"].startswith("SELECT")
    assert rule["sql"] != d1["sql"]  # the case's own is narrowed to its project
    import jsonschema

    jsonschema.validate(doc, documented_schema())  # the schema docs/reports.md ships
    summary = (run.reports / "summary.md").read_text()
    assert "| **D1** | occurrence with evidence has a determination | error | 1 | " + project in summary

    import xmlschema

    for schema in (XSD, JENKINS_XSD):
        xmlschema.XMLSchema(schema).validate(run.reports / "junit.xml")
    root = ET.parse(run.reports / "junit.xml").getroot()
    suite = {p.get("name"): p.get("value") for p in root.find("testsuite/properties")}
    assert suite["database"] == meta["database"]["label"]
    assert suite["scope"] == meta["scope"]
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert len(cases) == len(doc["results"])  # one testcase per rule x project
    case = cases[f"test_occurrence_with_evidence_has_a_determination[D1-{project}]"]
    assert case.get("classname") == "invariants.test_occurrences"
    assert case.get("line") is None
    assert case.find("failure").get("message").startswith("1 violating occurrences of ")
    assert f"ids: {partial.pk}" in case.find("system-out").text

    page = browser(run.reports / "report.html")
    assert page.console_errors() == []
    driver = page.driver
    assert meta["database"]["label"] in driver.title
    assert meta["scope"] in driver.title
    assert driver.find_element("css selector", ".inv-matrix td.f").text == "1"
    assert driver.find_elements("css selector", "svg rect")
    row_id = f"invariants/test_occurrences.py::test_occurrence_with_evidence_has_a_determination[D1-{project}]"
    row = driver.find_element("id", row_id)
    assert not row.find_element("css selector", ".inv").is_displayed()  # collapsed until clicked
    row.find_element("css selector", ".col-result").click()
    detail = driver.find_element("id", row_id).find_element("css selector", ".inv")  # the row is redrawn
    assert detail.is_displayed()
    assert d1["sql"] in detail.text
    assert "What to do: repair (journaled" in detail.text
    href = detail.find_element("link text", str(partial.pk)).get_attribute("href")
    assert href == f"https://antenna.example.org/projects/{station.project_id}/occurrences/{partial.pk}"
    assert page.console_errors() == []

    code, output = run("-m", "D1", "-o", "junit_family=xunit1")  # annotations: file and the rule's def line
    xmlschema.XMLSchema(XSD).validate(run.reports / "junit.xml")
    case = next(c for c in ET.parse(run.reports / "junit.xml").getroot().iter("testcase") if project in c.get("name"))
    source = (Path(__file__).parents[1] / case.get("file")).read_text().splitlines()
    assert source[int(case.get("line")) - 1].startswith("def test_occurrence_with_evidence_has_a_determination(")
    props = {p.get("name"): p.get("value") for p in case.find("properties")}
    assert props | {"checked": None} == {"rule": "D1", "project": project, "status": "failed", "violations": "1",
                                          "checked": None, "fixed": "0", "unfixable": "0",
                                          "changed_under_repair": "0"}


def test_a_run_keeps_each_case_small_to_the_end_of_the_session(run, tmp_path):
    """pytest keeps every item and its three reports to the end of the session; a case adds no more than its
    record (docs/benchmarks.md, figure 6): nothing left in the item's stash, one keywords dict for its three
    reports, a compact read-only record shared by the records and the call report, pytest-html's per-test
    scratch dropped.  What the reports say is unchanged (the other tests here; bench/same_reports.py)."""
    occurrences.partial_save(f.DeploymentFactory())
    retained = tmp_path / "retained.json"
    env = {"INVARIANTS_RETAINED": str(retained), "PYTHONPATH": str(ROOT / "tests")}

    code, output = run("-m", "D1 or F1", "-p", "plugins.retained", env=env)

    assert code == 1, output
    found = json.loads(retained.read_text())
    cases = found["cases"]
    assert cases == len(run.results()) >= 4
    assert found == {"cases": cases, "outcomes_on_items": 0, "reports_per_case": [3], "keywords_dicts_per_case": [1],
                     "records": cases, "finished_records": cases, "calls_holding_their_record": cases,
                     "html_scratch": [0]}


def test_a_finished_record_reads_as_its_dict():
    from antenna_invariants.results import FinishedRecord, Shapes

    shapes = Shapes()
    record = {"rule": "D1", "project": "project1", "sample": [3, 1], "delta": None, "journaled": {}}
    finished = FinishedRecord(record, shapes)
    assert finished == record
    assert dict(finished) == record
    assert list(finished) == list(record)
    assert (finished["sample"], finished.get("delta", 5), finished.get("new"), finished.get("new", 0)) == (
        [3, 1], None, None, 0)
    assert "rule" in finished
    assert "new" not in finished
    assert len(finished) == 5
    with pytest.raises(KeyError):
        finished["new"]
    with pytest.raises(TypeError):
        finished["rule"] = "D2"  # type: ignore[index]
    made = "".join(["D", "1"])  # an equal string, not the same object
    other = FinishedRecord(record | {"rule": made, "project": "project2", "sample": [3, 1], "journaled": {}}, shapes)
    assert other._index is finished._index  # the keys are kept once
    assert len(shapes.indexes) == 1
    assert other["journaled"] is finished["journaled"]  # equal small values once: an empty dict, a short string
    assert other["rule"] is finished["rule"]
    assert other["sample"] is not finished["sample"]  # a list with ids is its own
    assert other == record | {"project": "project2"}


@pytest.mark.parametrize("results", [
    [], [{"rule": "D1", "sql": "SELECT 1\nFROM x", "sample": [], "rows": [{"a": [1]}]}],
    [{}, {"a": {}}, {"b": [1, {}]}],
])
def test_invariants_json_is_written_piece_by_piece_as_json_dumps_writes_it_whole(results):
    from antenna_invariants.reporting import _json_text

    document = {"schema_version": 2, "run": {"started": "now", "nested": [1, {"x": None}]}, "rules": {}}
    whole = json.dumps(document | {"results": results}, indent=1, default=str) + "\n"
    assert "".join(_json_text(document, "results", iter(results))) == whole


def documented_schema() -> dict:
    text = (Path(__file__).parents[1] / "docs" / "reports.md").read_text()
    return json.loads(text.split("### JSON Schema", 1)[1].split("```json", 1)[1].split("```", 1)[0])


def test_the_documented_json_schema_rejects_what_it_should():
    import jsonschema

    schema = documented_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    record = {"rule": "D1", "project": "project5", "severity": "error", "status": "failed", "fails_run": True,
              "violations": 1, "checked": 3, "sample": [7], "sql": "SELECT 1", "fixed": 0, "unfixable": 0,
              "remaining": None, "title": "occurrence with evidence has a determination", "table": "main_occurrence",
              "risk": "medium", "repairable": True, "deletes": False, "threshold": None, "baseline": None,
              "new": None, "new_case": None, "new_ids": None, "delta": None, "docs": "docs/invariants.md#d1"}
    run = {"started": "2026-01-31T02:00:00+00:00", "duration": 1.0, "mode": "check", "scope": "projects 5",
           "database": {"label": "h:5432/antenna", "name": "antenna", "demo": False}, "provenance": {}}
    rules = {"D1": {k: record[k] for k in ("title", "table", "risk", "repairable", "deletes", "docs", "severity",
                                          "threshold")} | {"sql": "SELECT 2"}}
    passing = {"rule": "D1", "project": "project6", "status": "passed", "fails_run": False, "violations": 0,
               "checked": 3}
    document = {"schema_version": 2, "run": run, "totals": {"cases": 2}, "violations_remain": True, "rules": rules,
                "results": [record, passing]}
    jsonschema.validate(document, schema)
    for broken in ({"status": "fine"}, {"violations": -1}, {"project": "5"}, {"new_ids": [None]}, {"sql": None}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(document | {"results": [record | broken]}, schema)
    full = {k: record[k] for k in ("rule", "project", "status", "fails_run", "violations", "checked")}
    with pytest.raises(jsonschema.ValidationError):  # a record with violations is in full
        jsonschema.validate(document | {"results": [full]}, schema)
    with pytest.raises(jsonschema.ValidationError):  # a passing one carries no SQL and no sample
        jsonschema.validate(document | {"results": [passing | {"sql": "SELECT 1", "sample": []}]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document | {"rules": {"D1": rules["D1"] | {"sql": 1}}}, schema)


def test_store_failures_writes_every_violating_id_with_allowlisted_columns_per_case(run):  # noqa: F811
    import csv

    station = f.DeploymentFactory()
    partials = [occurrences.partial_save(station) for _ in range(3)]
    stored = run.reports / "failures"
    code, output = run("-m", "D1 or D6", f"--project={station.project_id}", "--sample-size", "1",
                       "--store-failures", str(stored))
    assert code == 1, output
    assert sorted(p.name for p in stored.iterdir()) == [f"D1-project{station.project_id}.csv"]  # D6 holds
    rows = list(csv.DictReader((stored / f"D1-project{station.project_id}.csv").open()))
    assert [int(r["id"]) for r in rows] == sorted(p.pk for p in partials)  # all of them, not the 1-id sample
    assert set(rows[0]) == {"id", "project_id", "deployment_id", "event_id", "determination_id", "determination_score"}
    assert rows[0]["project_id"] == str(station.project_id)
    assert rows[0]["determination_id"] == ""


def test_baseline_tolerates_known_violations_and_fails_on_new_rows(run):  # noqa: F811
    station = f.DeploymentFactory()
    known = occurrences.partial_save(station)
    scope = ("-m", "D1", f"--project={station.project_id}")
    key = ("D1", f"project{station.project_id}")

    code, output = run(*scope, "--write-baseline")
    assert code == 1, output
    written = json.loads((run.reports / "baseline.json").read_text())
    assert written["cases"][f"D1/project{station.project_id}"] == {
        "violations": 1, "ids": [known.pk], "first_seen": {str(known.pk): written["run_started"]}}
    (run.reports / "kept").mkdir()
    baseline = run.reports / "kept" / "baseline.json"
    (run.reports / "baseline.json").rename(baseline)
    previous = run.reports / "kept" / "previous.json"
    (run.reports / "invariants.json").rename(previous)

    code, output = run(*scope, "--baseline", str(baseline), "-v")
    assert code == 0, output
    assert "BASELINED" in output
    assert "NO FAILING VIOLATIONS; 1 tolerated" in output
    assert run.results()[key]["status"] == "baselined"

    junit = ET.parse(run.reports / "junit.xml").getroot()
    skipped = next(c.find("skipped") for c in junit.iter("testcase") if key[1] in c.get("name"))
    assert skipped.get("type") == "baselined"
    assert skipped.get("message").startswith("BASELINED: 0 new violating occurrences (1 now, 1 in the baseline)")
    assert junit.find("testsuite").get("skipped") == "1"
    assert junit.find("testsuite").get("failures") == "0"

    new = occurrences.partial_save(station)  # a new row
    code, output = run(*scope, "--baseline", str(baseline), "--compare", str(previous), "-v")
    assert code == 1, output
    record = run.results()[key]
    assert (record["new"], record["baseline"], record["delta"]) == (1, 1, 1)
    assert (record["new_ids"], record["new_case"]) == ([new.pk], False)
    assert "2 violating / " in output
    assert "new 1 (baseline 1)  +1 since the previous run" in output
    assert "1 new violating occurrences (2 now, 1 in the baseline)" in output
    assert f"new ids: {new.pk}" in output
    assert "| violations | new | projects |" in (run.reports / "summary.md").read_text()
    assert ">2 (+1)</td>" in (run.reports / "report.html").read_text()  # the matrix cell: count and delta

    known.delete()  # one fixed, one new: the count is the baseline's, the ids are not
    code, output = run(*scope, "--baseline", str(baseline))
    assert code == 1, output
    assert (run.results()[key]["new"], run.results()[key]["violations"]) == (1, 1)


def test_sample_columns_come_from_an_allowlist(run):  # noqa: F811
    station = f.DeploymentFactory()
    partial = occurrences.partial_save(station)
    code, output = run("-m", "D1", f"--project={station.project_id}", "--sample-columns", "event_id")
    assert code == 1, output
    rows = run.results()[("D1", f"project{station.project_id}")]["sample_rows"]
    assert rows == [{"id": partial.pk, "event_id": partial.event_id}]
    code, output = run("-m", "D1", "--sample-columns", "path")
    assert code == 4, output
    assert "ERROR: --sample-columns path: not on the allowlist" in output, output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--baseline", "/nonexistent/baseline.json"], "ERROR: --baseline /nonexistent/baseline.json: no such file"),
        (["--compare", str(ROOT / "pyproject.toml")], "pyproject.toml: not a JSON file"),
        (["--antenna-url", "javascript:alert(1)"], "ERROR: --antenna-url 'javascript:alert(1)': expected an http(s)"),
    ],
)
def test_bad_report_options_are_one_line_and_exit_code_4(run, args, message):  # noqa: F811
    code, output = run(*args)
    assert code == 4, output
    assert message in output
    assert "Traceback" not in output


def test_no_secret_reaches_any_report_or_log_line(run):  # noqa: F811
    station = f.DeploymentFactory()
    occurrences.partial_save(station)
    url = f"{url_for(connection.settings_dict)} password={PASSWORD}"
    secret_url = f"postgres://reader:{PASSWORD}@db.example.org/antenna"
    env = {"DATABASE_URL": url, "BUILD_URL": f"https://ci:{CI_TOKEN}@ci.example.org/job/1"}

    code, output = run("-m", "D1", "-v", "--write-baseline", "--metadata", "DATABASE_URL", secret_url, env=env)

    assert code == 1, output
    written = [p for p in run.reports.iterdir() if p.is_file()]
    assert {p.name for p in written} >= {"invariants.json", "junit.xml", "report.html", "baseline.json"}
    for text in [output] + [p.read_text() for p in written]:
        assert PASSWORD not in text
        assert CI_TOKEN not in text
    html = (run.reports / "report.html").read_text()
    assert "postgres://reader:****@db.example.org/antenna" in html.replace("&#34;", '"')  # masked, not dropped


def test_redaction_masks_urls_keywords_and_secret_names():
    environment = {
        "DATABASE_URL": "postgres://u:pw1@h/db",
        "Plugins": {"html": "4.2.0"},
        "AWS_SECRET_ACCESS_KEY": "abc",
        "Note": "conninfo host=h password=pw2 dbname=x",
        "BUILD_URL": "https://ci:pw3@ci/job",
        "Other": "mentions pw4 verbatim",
    }
    runinfo.redact(environment, secrets=("pw4",))
    assert environment == {
        "DATABASE_URL": "postgres://u:****@h/db",
        "Plugins": {"html": "4.2.0"},
        "AWS_SECRET_ACCESS_KEY": "****",
        "Note": "conninfo host=h password=**** dbname=x",
        "BUILD_URL": "https://ci:****@ci/job",
        "Other": "mentions **** verbatim",
    }


SYNTHETIC_CONFTEST = '''
import pytest
from antenna_invariants import html
from antenna_invariants.rules import Rule

def rows(occurrences):
    """An occurrence with evidence has a determination (synthetic)."""

RULES = {f"R{i}": Rule(f"R{i}", rows, "occurrences", "synthetic", hint="look at it") for i in range(RULES_N)}
COLUMNS = ", ".join(f'"main_occurrence"."c{i}"' for i in range(40))
SQL = "SELECT " + COLUMNS + ' FROM "main_occurrence" WHERE "project_id" = '
CASES = [(rule, project) for rule in range(RULES_N) for project in range(PROJECTS_N)]

def failing(rule, project):
    return (rule + project) % EVERY_N == 0

def record(rule, project):
    failed = failing(rule, project)
    return dict(rule=f"R{rule}", project=f"project{project}", severity="error", status="failed" if failed else "passed",
        violations=12345 if failed else 0, checked=99999, sample=list(range(1000000, 1000020)) if failed else [],
        fixed=0, unfixable=0, changed_under_repair=0, remaining=None, sql=SQL + str(project) if failed else "",
        sample_rows=[], new=None, baseline=None, delta=7 if failed else None, fails_run=failed)

OUTCOMES = []

def pytest_configure(config):
    config.option.htmlpath, config.option.self_contained_html = "report.html", True
    config.pluginmanager.register(html.HtmlReport("synthetic", RULES, OUTCOMES, antenna_url="https://antenna.example.org",
                                                  compare=True, planned=len(CASES)))
    # more cases than the table lists: the passing ones are in the matrix only, so they need no test here
    OUTCOMES.extend(record(*case) for case in CASES if not failing(*case))

def pytest_generate_tests(metafunc):
    metafunc.parametrize(("rule", "project"), [case for case in CASES if failing(*case)])

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.when == "call":
        report.invariant = record(item.callspec.params["rule"], item.callspec.params["project"])

def pytest_runtest_logreport(report):
    if report.when == "call":
        OUTCOMES.append(report.invariant)
'''


def test_60_rules_by_1000_projects_stay_small_and_open(tmp_path, browser):  # noqa: F811
    """A full run over 1000 projects: 60 rules x 1000 projects, one case in ten failing with a full sample and a
    long SQL (synthetic outcomes through the real report hooks; a database of 1000 projects takes minutes to
    check).  The report lists the first 1000 failing cases, shows every case in the matrix, and opens in
    headless Chromium; how fast it opens is a bench figure (docs/benchmarks.md, figure 6)."""
    conftest = SYNTHETIC_CONFTEST.replace("RULES_N", "60").replace("PROJECTS_N", "1000").replace("EVERY_N", "10")
    (tmp_path / "conftest.py").write_text(conftest)
    # the cases pass in pytest's eyes (its own failure reports would only slow the run); the report says failed
    (tmp_path / "test_synthetic.py").write_text("def test_case(rule, project):\n    pass\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "antenna_invariants.settings"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:django",
         "-o", "render_collapsed=all"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert "6000 passed" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    report = tmp_path / "report.html"
    size = report.stat().st_size
    print(f"60 x 1000 report: {size / 1e6:.2f} MB")
    assert size < 8_000_000
    assert "5000 more non-passing cases are not listed" in report.read_text()

    page = browser(report)
    print(f"opened in {page.load_seconds:.2f} s")
    assert page.console_errors() == []
    assert len(page.driver.find_elements("css selector", ".inv-matrix td.f")) == 6_000
    assert len(page.driver.find_elements("css selector", ".inv-matrix td.p")) == 54_000
    assert len(page.driver.find_elements("css selector", "#results-table tbody")) == 1000


def reports_of(reports: Path) -> dict:
    """What a run's reports say, timings and the reports' own directory aside: the JSON records, JUnit's
    testcases and counts, summary.md and the HTML matrix."""
    doc = document(reports)
    cases = [{k: v for k, v in r.items() if k != "duration"} for r in doc["results"]]
    tree = ET.parse(reports / "junit.xml").getroot()
    suites = [{k: v for k, v in s.attrib.items() if k not in ("time", "timestamp", "hostname")}
              for s in tree.iter("testsuite")]
    for case in tree.iter("testcase"):
        case.attrib.pop("time")
    testcases = [ET.tostring(case, encoding="unicode") for case in tree.iter("testcase")]
    html = (reports / "report.html").read_text()
    matrix = html[html.index("inv-matrix"):html.index("</table>", html.index("inv-matrix"))]
    summary = re.sub(r"[0-9.]+ ?s\b", "T", (reports / "summary.md").read_text().replace(str(reports), "REPORTS"))
    baseline = reports / "baseline.json"
    known = json.loads(baseline.read_text())["cases"] if baseline.exists() else None
    for case in (known or {}).values():  # the ids first seen, not when (the run's start)
        case["first_seen"] = sorted(case.get("first_seen", {}))
    return {"cases": cases, "totals": doc["totals"], "rules": doc["rules"], "remain": doc["violations_remain"],
            "suites": suites, "testcases": testcases, "matrix": matrix, "summary": summary, "baseline": known}


@pytest.mark.parametrize("extra", [(), ("-o", "junit_family=xunit1"), ("--strict",), ("-n", "2"),
                                   ("--write-baseline",), ("--occurrence", "{phantom}")],
                         ids=["xunit2", "xunit1", "strict", "xdist", "baseline", "skipped"])
def test_a_test_per_rule_reports_every_case_as_its_own_test_would(run, tmp_path, extra):  # noqa: F811
    """--tests-per rule (the default beyond 5,000 cases): one pytest test per rule, covering its projects; every
    report but the terminal says what one test per rule x project says, case by case."""
    stations = [f.DeploymentFactory() for _ in range(3)]
    occurrences.partial_save(stations[0])
    phantom = occurrences.phantom_occurrence(stations[1])
    occurrences.stale_score(stations[1])
    selection = ("-m", "occurrences or captures", "--junitxml")
    extra = tuple(arg.format(phantom=phantom.pk) for arg in extra)  # --occurrence: the rules on captures skip

    said = {}
    for mode in ("case", "rule"):
        reports = tmp_path / mode
        code, output = run(*selection, str(reports / "junit.xml"), "--reports", str(reports), "--tests-per", mode,
                           *extra)
        assert code == 1, output
        said[mode] = (reports_of(reports), output)

    by_case, by_rule = said["case"][0], said["rule"][0]
    assert len(by_case["cases"]) >= (12 if "--occurrence" in extra else 3 * 12)  # one project's, or three
    assert any(r["fails_run"] for r in by_case["cases"])
    if "-n" in extra:  # xdist reports in the order its workers finish
        for said_by in (by_case, by_rule):
            said_by["testcases"].sort()
            said_by["cases"].sort(key=lambda r: (r["rule"], r["project"]))
    assert by_rule == by_case
    assert (by_case["baseline"] is not None) == ("--write-baseline" in extra)
    skipped = [t for t in by_case["testcases"] if 'type="pytest.skip"' in t]
    assert bool(skipped) == ("--occurrence" in extra), skipped
    assert all("case.py" not in t for t in skipped)  # the reason, not the engine's line that skipped
    rules = {r["rule"] for r in by_case["cases"]}
    failing = {r["rule"] for r in by_case["cases"] if r["fails_run"]}
    tests = dict((kind, int(n)) for n, kind in re.findall(r"(\d+) (failed|passed|skipped|warned)\b", said["rule"][1]))
    assert tests["failed"] == len(failing)
    assert sum(tests.values()) == len(rules)  # a test per rule
    assert "[D1-project" not in said["rule"][1] or "-v" in extra  # the terminal: one line per rule's test


def test_a_test_per_rule_reads_in_its_consumers_junit_schemas_and_a_browser(run, browser):  # noqa: F811
    """What a CI dashboard and a person open: the expanded JUnit against both schemas, the HTML in Chromium
    with the rule's row opening onto each failing project's details."""
    import xmlschema

    stations = [f.DeploymentFactory() for _ in range(2)]
    partials = [occurrences.partial_save(station) for station in stations]

    code, output = run("-m", "D1 or F1", "--tests-per", "rule", "-o", "junit_family=xunit1")

    assert code == 1, output
    xmlschema.XMLSchema(XSD).validate(run.reports / "junit.xml")  # xunit1: properties, file and line
    code, output = run("-m", "D1 or F1", "--tests-per", "rule")
    assert code == 1, output
    for schema in (XSD, JENKINS_XSD):
        xmlschema.XMLSchema(schema).validate(run.reports / "junit.xml")
    names = [c.get("name") for c in ET.parse(run.reports / "junit.xml").getroot().iter("testcase")]
    assert len(names) == len(document(run.reports)["results"])  # a testcase per rule x project
    assert f"test_occurrence_with_evidence_has_a_determination[D1-project{stations[1].project_id}]" in names

    page = browser(run.reports / "report.html")
    assert page.console_errors() == []
    driver = page.driver
    assert len(driver.find_elements("css selector", ".inv-matrix td.f")) == 2  # a cell per failing case
    row_id = "invariants/test_occurrences.py::test_occurrence_with_evidence_has_a_determination[D1]"
    driver.find_element("id", row_id).find_element("css selector", ".col-result").click()
    detail = driver.find_element("id", row_id)
    assert detail.find_element("css selector", ".col-project").text.endswith("projects")
    shown = [h.text for h in detail.find_elements("css selector", "h4")]
    assert shown == [f"project{s.project_id}" for s in stations]
    for partial in partials:
        assert str(partial.pk) in detail.text
    assert page.console_errors() == []


def test_junit_shows_what_xml_cannot_hold_as_pytest_does():
    from _pytest.junitxml import bin_xml_escape

    from antenna_invariants.junit import visible

    controls = "".join(map(chr, range(0x20)))
    assert visible(controls) == bin_xml_escape(controls)  # pytest 8 and 9 alike
    # as pytest 9 (pytest 8 mis-writes its pattern's last range: it lets DEL through, escapes beyond U+FFFF)
    assert visible("ok\x1b[31m\x7f\ufffe\U0001F41B é") == "ok#x1B[31m#x7F#xFFFE\U0001F41B é"


def test_auto_collects_a_test_per_rule_beyond_its_threshold_unless_cases_are_named(run):  # noqa: F811
    """--tests-per auto: a test per rule x project up to PER_RULE_ABOVE cases, a test per rule beyond (here
    lowered through the environment of the run's own process), and per case again when -k names cases."""
    station = f.DeploymentFactory()
    occurrences.partial_save(station)
    low = {"PYTHONPATH": str(ROOT / "tests"), "INVARIANTS_PER_RULE_ABOVE": "1"}

    code, plain = run("-m", "D1", "--collect-only", "-q")
    code_low, low_output = run("-m", "D1", "--collect-only", "-q", "-p", "plugins.per_rule_above", env=low)
    code_k, named = run("-k", "D1", "--collect-only", "-q", "-p", "plugins.per_rule_above", env=low)

    assert (code, code_low, code_k) == (0, 0, 0), plain + low_output + named
    assert f"[D1-project{station.project_id}]" in plain
    assert "[D1]" not in plain
    assert "test_occurrence_with_evidence_has_a_determination[D1]" in low_output
    assert f"[D1-project{station.project_id}]" not in low_output
    assert f"[D1-project{station.project_id}]" in named


def test_a_test_per_rule_repairs_each_failing_project_and_journals_it(run):  # noqa: F811
    stations = [f.DeploymentFactory() for _ in range(2)]
    for station in stations:
        occurrences.partial_save(station)

    code, output = run("-m", "D1", "--tests-per", "rule", "--repair", "--all-projects")
    repaired = {k: r for k, r in run.results().items() if r["status"] == "repaired"}
    again, clean = run("-m", "D1", "--tests-per", "rule")

    assert code == 0, output
    assert set(repaired) == {("D1", f"project{s.project_id}") for s in stations}, run.results()
    assert all(r["fixed"] == 1 and r["journal"] for r in repaired.values())
    assert again == 0, clean
    assert "1 passed" in clean
