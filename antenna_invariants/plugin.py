"""The pytest plugin: hooks only, in the order pytest calls them.  The work is elsewhere: options.py (the
command line), session.py (the run: database and scope), marks.py (a case's marks), case.py (a test: one rule
x scope, or each scope of a rule), runchecks.py, check.py and repair.py (the engine), scheduling.py (xdist's
workers), results.py (the outcomes on ``config.stash``), reporting.py, html.py, junit.py (the reports).

Two kinds of session share this plugin:
- an *invariants* session (`pytest invariants ...`) runs the rules against a live database (``DATABASE_URL``)
  or, without one, against a demo database on the embedded PostgreSQL.  It never creates, migrates or flushes
  a live database, and in check mode the connection itself is read-only;
- a *self-test* session (`pytest tests`) is plain pytest-django: a throwaway test database built by the
  mirror's migrations (or from Antenna's own schema.sql, see tests/conftest.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from antenna_invariants import baseline, html, junit, marks, reporting, runinfo
from antenna_invariants import connection as conn
from antenna_invariants.case import Case, case_keys, covers_a_rule, scopes_of, verdict
from antenna_invariants.errors import ConfigError
from antenna_invariants.layout import load_rules
from antenna_invariants.options import RunOptions, add_options
from antenna_invariants.results import RESULTS, Results, cases_of, checked_anything, records_of, results_of
from antenna_invariants.rules import RULES, Status, run_order
from antenna_invariants.session import SESSION, Session, is_invariants_session, session_of

# --- options and configuration ----------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    try:
        if not is_invariants_session(config):
            if not conn.database_url():
                conn.use_database(conn.django_database(conn.embedded_url()))
            return
        load_rules()
        options = RunOptions.from_config(config, RULES)
        session = Session(config, options, options.rule_settings.configured(RULES))
        worker_db = getattr(config, "workerinput", {}).get("invariants_database")
        session.prepare(json.loads(worker_db) if worker_db else None)
    except ConfigError as exc:
        raise pytest.UsageError(conn.mask(str(exc), config.getoption("antenna_url", None))) from None
    config.stash[SESSION] = session
    config.stash[RESULTS] = results = Results(previous=options.previous)
    config.pluginmanager.register(results, "antenna-invariants-results")
    marks.declare(config, RULES)
    reporting.default_report_paths(config, options.reports)
    if not session.is_worker:
        session.staged = reporting.stage(config)
    if config.pluginmanager.hasplugin("html"):
        report = html.HtmlReport(
            session.run.title, session.rules, results.records, antenna_url=options.antenna_url,
            compare=options.previous is not None, planned=session.planned_tests(), scope_option=options.scope_option(),
            config=config,
        )
        config.pluginmanager.register(report, "antenna-invariants-html")


def _session_of_case(config: pytest.Config) -> Session:
    """The run's ``Session``, for a rule's case (collected only in an invariants session)."""
    session = session_of(config)
    if session is None:
        raise pytest.UsageError("rules run in an invariants session: pytest invariants [options]")
    return session


@pytest.hookimpl(optionalhook=True)
def pytest_metadata(metadata: dict[str, Any], config: pytest.Config) -> None:
    """The HTML environment table: what was checked and with what (provenance); secrets masked."""
    session = session_of(config)
    if session is not None:
        metadata.update(session.run.environment())
    runinfo.redact(metadata, session.run.secrets if session is not None else ())


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: a worker checks the controller's database (a snapshot or demo is not prepared twice)."""
    session = session_of(node.config)
    if session is not None:
        node.workerinput["invariants_database"] = json.dumps(session.handoff())


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``-n`` with xdist's default ``--dist load``: every case of a rule to one worker (``scheduling``)."""
    if session_of(config) is None or config.getvalue("dist") != "load":
        return None
    from antenna_invariants.scheduling import ByRule  # only here: xdist is optional, and its scheduler loads execnet

    return ByRule(config, log)


# --- the session starts -----------------------------------------------------------------------------------


def pytest_sessionstart(session: pytest.Session) -> None:
    run, terminal = session_of(session.config), session.config.pluginmanager.get_plugin("terminalreporter")
    if run is not None and terminal is not None and not run.options.detailed:
        reporting.quiet_failures(terminal)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    session = session_of(config)
    if not session:
        return None
    lines = [session.description, session.run.header(), *session.run.incremental_header()]
    if session.leaves_out_global():
        left_out = ", ".join(session.global_rules())
        lines.append(f"global rules left out of this --project run: {left_out} (add -m global to check them)")
    return lines


# --- collection: one test case per rule x scope (or one test per rule: --tests-per) --------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    declared = getattr(metafunc.function, "rule", None)
    if declared is None or "invariant_case" not in metafunc.fixturenames:
        return
    session = _session_of_case(metafunc.config)
    entry = session.rules[declared.id]
    marked = marks.rule_marks(entry)
    scopes = session.scopes_for(entry)
    if session.per_rule():  # one test covering every case of the rule (README, "Many projects")
        params = [pytest.param(tuple(scopes), id=entry.id, marks=marked)] if scopes else []
    else:
        params = [pytest.param(s, id=f"{entry.id}-{s.label}", marks=marked) for s in scopes]
    metafunc.parametrize("invariant_case", params, indirect=True)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the rules in dependency order (``rules.RUN_ORDER``: structure and determinations before the
    cached counts, so one --repair pass leaves nothing a second could fix), and remember which rule x scope
    cases survived -k, -m and --deselect (trylast: after pytest deselects)."""
    session = session_of(config)
    if session is None:
        return
    if session.leaves_out_global():
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("global") is not None])
        items[:] = [i for i in items if i.get_closest_marker("global") is None]
    items.sort(key=lambda item: run_order(getattr(getattr(item, "function", None), "rule", None)))
    session.selected, session.grouped = {key for item in items for key in case_keys(item)}, {}
    for item in items:  # a case needs its own fixture only: pytest-django's ten per-test fixtures cost each case
        names = getattr(item, "fixturenames", [])  # more than its check (docs/benchmarks.md, figure 6)
        if "invariant_case" in names:
            names[:] = [name for name in names if name in CASE_FIXTURES]


# --- running a case ---------------------------------------------------------------------------------------


CASE_FIXTURES = ("django_db_blocker", "invariant_case")  # what a case's test needs


@pytest.fixture
def invariant_case(request: pytest.FixtureRequest, django_db_blocker: Any) -> Iterator[Case]:
    with django_db_blocker.unblock():
        yield Case(request.node, _session_of_case(request.config))


KEYWORDS = pytest.StashKey[dict[str, Any]]()  # node id -> its setup report's keywords, until its teardown


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A case's call report carries its record (``report.invariant``), a test per rule's the records of its cases
    (``report.invariants``).  pytest keeps every report of every test to the end of the session (the terminal's
    counts, pytest-html, JUnit): what a case holds beyond pytest's own is kept small (docs/benchmarks.md, figure 6)."""
    result = yield
    report = result.get_result()
    if not scopes_of(item):  # not an invariants test
        return
    records = records_of(item) if report.when == "call" else []
    if records:
        if covers_a_rule(item):
            report.invariants = records
        else:
            report.invariant = records[0]
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None:  # JUnit's failure message and the short summary: the count line, no "Failed: "
            crash.message = crash.message.removeprefix("Failed: ").split("\n")[0]
    if "@" in report.nodeid:
        # xdist's loadgroup names a worker's items "nodeid@group"; the reports keep the case's own node id
        report.nodeid = report.nodeid.split("@", 1)[0]
    # the three reports of a case have the same keywords (the item's names): one dict, not three of 0.6 KB
    keywords = item.config.stash.setdefault(KEYWORDS, {})
    first = keywords.pop(report.nodeid, None) if report.when == "teardown" else keywords.get(report.nodeid)
    if first is not None and first == report.keywords:
        report.keywords = first
    elif report.when == "setup":
        keywords[report.nodeid] = report.keywords


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, Any] | None:
    """An invariants test's own outcomes (a test per rule: its failing cases all errors is an error; a passing
    one shows the first of warned, baselined, repaired among its cases)."""
    records = cases_of(report) if report.when == "call" else []
    if not records:
        return None
    failing = [r["status"] for r in records if r.get("fails_run")]
    if report.failed and failing and all(status == Status.ERROR for status in failing):
        return "error", "E", "ERROR"  # could not run (a timeout, a database error): an error, not a failure
    statuses = {r["status"] for r in records}
    if not report.passed:
        return None
    if Status.WARNED in statuses:
        return "warned", "W", ("WARN", {"yellow": True})
    if Status.BASELINED in statuses:
        return "baselined", "B", ("BASELINED", {"yellow": True})
    if Status.REPAIRED in statuses:
        return "repaired", "R", ("REPAIRED", {"green": True})
    return None


# (each case's record reaches ``results.Results.pytest_runtest_logreport``, registered at configure)


# --- the end: reports -------------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
    """Our JSON (and baseline), then JUnit and HTML (pytest's own plugins, written beside their final paths and
    renamed into place); a report that cannot be written (disk full, permissions) is one line naming the file
    and exit code 4, and the terminal summary still shows.  A run that checked nothing writes no report."""
    config, failed = session.config, None
    run = session_of(config)
    controller = run if run is not None and not run.is_worker else None  # the controller writes the reports
    checked = checked_anything(config, exitstatus)
    records = results_of(config)
    if controller is not None and checked:
        try:
            meta, reports = controller.run.as_dict(), controller.options.reports
            reporting.write_json(reports / "invariants.json", records, meta, controller.rule_records(records))
            reporting.write_summary(reports / "summary.md", records, meta)
            if controller.options.write_baseline:
                baseline.write(reports / "baseline.json", records, meta)
        except OSError as exc:
            failed = exc
    try:
        yield
        if controller is not None and Path(config.option.xmlpath or "").is_file():
            scope_option = controller.options.scope_option()
            junit.reshape(Path(config.option.xmlpath), records, controller.rules, config.getini("junit_family"),
                          lambda o: reporting.details(controller.rules[o["rule"]], o, scope_option),
                          controller.run.junit_properties(),
                          lambda o: verdict(controller.rules[o["rule"]], o, controller.options.strict, scope_option))
    except OSError as exc:
        failed = failed or exc
    if controller is not None:
        try:
            reporting.publish(controller.staged, checked and failed is None)
        except OSError as exc:
            failed = failed or exc
        reporting.settle(config, controller.staged, checked)
    if failed is not None:
        sys.stderr.write(reporting.write_failed(failed, run.staged if run else None) + "\n")
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
    if controller is not None:
        controller.exitstatus = session.exitstatus


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = session_of(config)
    if run is None or run.is_worker:
        return
    if run.snapshot is not None:
        kept = "dropped at the end of the run"
        if run.options.keep_snapshot:
            kept = f"kept: {conn.mask(run.snapshot.url)} (drop it with: {run.snapshot.drop_statements})"
        terminalreporter.write_line(f"snapshot database {run.snapshot.name}: {kept}")
    exitstatus = run.exitstatus if run.exitstatus is not None else exitstatus
    if not checked_anything(config, exitstatus):  # exit 4 or 5 before any case ran: no summary, no verdict
        terminalreporter.write_line(
            f"antenna invariants: nothing was checked (exit code {int(exitstatus)}); "
            f"the reports of the previous run are left as they were"
        )
        return
    reporting.terminal_summary(terminalreporter, results_of(config), run.rules, run.options.reports,
                               run.options.detailed, exitstatus, run.options.scope_option())


def pytest_unconfigure(config: pytest.Config) -> None:
    run = session_of(config)
    if run is not None:
        run.drop_snapshot()
