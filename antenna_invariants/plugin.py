"""The pytest plugin: hooks only, in the order pytest calls them.  The work is elsewhere: options.py (the
command line), session.py (the run: database and scope), case.py (one rule x scope), check.py and repair.py
(the engine), results.py (the outcomes on ``config.stash``), reporting.py, html.py, junit.py (the reports).

Two kinds of session share this plugin:
- an *invariants* session (`pytest invariants ...`) runs the rules against a live database (``DATABASE_URL``)
  or, without one, against a demo database on the embedded PostgreSQL.  It never creates, migrates or flushes
  a live database, and in check mode the connection itself is read-only;
- a *self-test* session (`pytest tests`) is plain pytest-django: a throwaway test database built by the
  mirror's migrations (or from Antenna's own schema.sql, see tests/conftest.py).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from antenna_invariants import baseline, html, junit, reporting, runinfo
from antenna_invariants import connection as conn
from antenna_invariants.case import Case
from antenna_invariants.errors import ConfigError
from antenna_invariants.layout import INVARIANTS_DIR, load_rules
from antenna_invariants.options import RunOptions, add_options
from antenna_invariants.results import OUTCOME, RESULTS, Results, results_of
from antenna_invariants.rules import RULES, SETTINGS, Rule, Severity, Status, run_order
from antenna_invariants.session import SESSION, Session, db_access

# --- options and configuration ----------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def _is_invariants_session(config: pytest.Config) -> bool:
    paths = [Path(str(arg).split("::")[0]) for arg in config.args]
    resolved = [(p if p.is_absolute() else Path(config.invocation_params.dir) / p).resolve() for p in paths]
    inside = [p == INVARIANTS_DIR or INVARIANTS_DIR in p.parents for p in resolved]
    if any(inside) and not all(inside):
        raise pytest.UsageError("run the invariants and the self-tests in separate pytest sessions")
    return bool(inside) and all(inside)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    try:
        if not _is_invariants_session(config):
            if not conn.database_url():
                conn.use_database(conn.django_database(conn.embedded_url()))
            return
        load_rules()
        options = RunOptions.from_config(config, RULES)
        SETTINGS["joblog_max_age"] = options.rule_settings.joblog_max_age
        session = Session(config, options, options.rule_settings.configured(RULES))
        worker_db = getattr(config, "workerinput", {}).get("invariants_database")
        session.prepare(json.loads(worker_db) if worker_db else None)
    except ConfigError as exc:
        raise pytest.UsageError(conn.mask(str(exc), config.getoption("antenna_url", None))) from None
    config.stash[SESSION] = session
    config.stash[RESULTS] = results = Results(previous=options.previous)
    config.pluginmanager.register(results, "antenna-invariants-results")
    for domain in sorted({r.domain for r in RULES.values()}):
        config.addinivalue_line("markers", f"{domain}: invariants of the {domain} domain")
    for entry in RULES.values():
        config.addinivalue_line("markers", f"{entry.id}: {entry.doc[:80]}")
    for name, meaning in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")
    reporting.default_report_paths(config, options.reports)
    if not session.is_worker:
        session.staged = reporting.stage(config)
    if config.pluginmanager.hasplugin("html"):
        planned = sum(len(session.scopes_for(entry)) for entry in session.rules.values())
        report = html.HtmlReport(
            session.run.title, session.rules, results.records, antenna_url=options.antenna_url,
            compare=options.previous is not None, planned=planned, scope_option=options.scope_option(), config=config,
        )
        config.pluginmanager.register(report, "antenna-invariants-html")


DESCRIBED = pytest.StashKey[dict[str, dict[str, Any]]]()  # rule id -> reporting.describe(rule), for the run


def _session(config: pytest.Config) -> Session | None:
    """The run's ``Session`` (None outside an invariants session)."""
    return config.stash.get(SESSION, None)


def _session_of_case(config: pytest.Config) -> Session:
    """The run's ``Session``, for a rule's case (collected only in an invariants session)."""
    session = _session(config)
    if session is None:
        raise pytest.UsageError("rules run in an invariants session: pytest invariants [options]")
    return session


@pytest.hookimpl(optionalhook=True)
def pytest_metadata(metadata: dict[str, Any], config: pytest.Config) -> None:
    """The HTML environment table: what was checked and with what (provenance); secrets masked."""
    session = _session(config)
    if session is not None:
        metadata.update(session.run.environment())
    runinfo.redact(metadata, session.run.secrets if session is not None else ())


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: a worker checks the controller's database (a snapshot or demo is not prepared twice)."""
    session = _session(node.config)
    if session is not None:
        node.workerinput["invariants_database"] = json.dumps(session.handoff())


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``-n`` (xdist's default ``--dist load``), send every case of a rule to one worker: the rule's
    first case checks all its projects in one statement, which would otherwise run on every worker that got
    one of its cases (docs/benchmarks.md, figure 4); the rules of a shared scan (antenna_invariants.shared) go
    to one worker together.  Each case also carries its rule's ``xdist_group`` mark,
    so ``--dist loadgroup`` groups the same way; it is not the default because pytest 9.2 broke it (the
    groups are silently ignored, pytest-dev/pytest-xdist#1386), and then this scheduler can retire."""
    if _session(config) is None or config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling  # xdist is optional (the self-tests' extra)

    from antenna_invariants.rules import RULES
    from antenna_invariants.shared import SCANS

    scans = {entry.name: f"shared scan: {SCANS[rule].name}" for rule, entry in RULES.items() if rule in SCANS}

    class ByRule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            test = nodeid.split("[", 1)[0]  # the rule's test, without its project parameter
            return scans.get(test.rsplit("::", 1)[-1], test)  # the rules of a shared scan go together

    return ByRule(config, log)


# --- the session starts -----------------------------------------------------------------------------------


def _detailed(config: pytest.Config) -> bool:
    """-v, -rA or an explicit --tb: pytest's full output; by default the terminal fits on a screen."""
    return config.option.verbose > 0 or "A" in (config.option.reportchars or "") or config.option.tbstyle != "auto"


def pytest_sessionstart(session: pytest.Session) -> None:
    run = _session(session.config)
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    if run is not None and terminal is not None and not _detailed(session.config):
        # the summary table and the first failures in full replace pytest's failure sections (reports: all)
        terminal.summary_failures = terminal.summary_errors = lambda: None
        terminal.reportchars = ""
    if run is not None:
        reporting.add_junit_properties(session.config, run.run.junit_properties())


def _leaves_out_global(config: pytest.Config) -> bool:
    """A --project run checks that project's rows: rules on global tables stay out unless asked for, by ``-m``
    or ``-k`` naming ``global`` or one of those rules."""
    session = _session(config)
    asked = set(re.findall(r"\w+", f"{config.option.markexpr or ''} {config.option.keyword or ''}"))
    return bool(session and session.options.projects
                and not asked & ({"global"} | {r.id for r in RULES.values() if r.is_global}))


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    session = _session(config)
    if not session:
        return None
    lines = [session.description, session.run.header(), *session.run.incremental_header()]
    if _leaves_out_global(config):
        left_out = ", ".join(sorted(r.id for r in RULES.values() if r.is_global))
        lines.append(f"global rules left out of this --project run: {left_out} (add -m global to check them)")
    return lines


# --- collection: one test case per rule x scope -----------------------------------------------------------

MARKERS = {
    "error": "rules of severity error (they fail the run)",
    "warn": "rules of severity warn (WARN; they fail only under --strict)",
    "repairable": "rules that have a repair",
    "risk_low": "rules whose repair is a pure recompute",
    "risk_medium": "rules whose repair changes what users see",
    "risk_high": "rules whose repair deletes rows",
    "global": "rules on tables without a project (taxa): left out of a --project run unless -m global",
}
RISK_MARKS = {"L": "risk_low", "M": "risk_medium", "H": "risk_high"}


def rule_marks(entry: Rule) -> list[pytest.MarkDecorator]:
    """The case's marks: domain, rule id, severity, repairability, risk, global; and the rule's xdist group
    (``--dist loadgroup`` sends all of a rule's cases to one worker)."""
    names: list[str | None] = [entry.domain, entry.id, Severity(entry.severity).value]
    names += ["repairable"] * (entry.repair_func is not None) + [RISK_MARKS.get(entry.risk)]
    names += ["global"] * entry.is_global
    return [getattr(pytest.mark, name) for name in names if name] + [pytest.mark.xdist_group(entry.id)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    declared = getattr(metafunc.function, "rule", None)
    session = _session(metafunc.config)
    if declared is None or "invariant_case" not in metafunc.fixturenames:
        return
    if session is None:
        raise pytest.UsageError("rules run in an invariants session: pytest invariants [options]")
    entry = session.rules[declared.id]
    marks = rule_marks(entry)
    params = [pytest.param(s, id=f"{entry.id}-{s.label}", marks=marks) for s in session.scopes_for(entry)]
    metafunc.parametrize("invariant_case", params, indirect=True)


def _case_key(item: pytest.Item) -> tuple[str, str] | None:
    """(rule, scope label) of an invariants case; None for any other item."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "invariant_case" not in params:
        return None
    return item.function.rule.id, params["invariant_case"].label  # type: ignore[attr-defined]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the rules in dependency order (``rules.RUN_ORDER``: structure and determinations before the
    cached counts, so one --repair pass leaves nothing a second could fix), and remember which rule x scope
    cases survived -k, -m and --deselect (trylast: after pytest deselects)."""
    session = _session(config)
    if session is None:
        return
    if _leaves_out_global(config):
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("global") is not None])
        items[:] = [i for i in items if i.get_closest_marker("global") is None]
    items.sort(key=lambda item: run_order(getattr(getattr(item, "function", None), "rule", None)))
    session.selected, session.grouped = {key for key in map(_case_key, items) if key is not None}, {}
    for item in items:  # a case needs its own fixture only: pytest-django's ten per-test fixtures cost each case
        names = getattr(item, "fixturenames", [])  # more than its check (docs/benchmarks.md, figure 6)
        if "invariant_case" in names:
            names[:] = [name for name in names if name in CASE_FIXTURES]


# --- running a case ---------------------------------------------------------------------------------------


CASE_FIXTURES = ("django_db_blocker", "invariant_case")  # what a case's test needs


@pytest.fixture
def invariant_case(request: pytest.FixtureRequest, django_db_blocker: Any) -> Iterator[Case]:
    with django_db_blocker.unblock():
        yield Case(request.node, _session_of_case(request.config), request.param)


KEYWORDS = pytest.StashKey[dict[str, Any]]()  # node id -> its setup report's keywords, until its teardown


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A case's call report carries its record (``report.invariant``).  pytest keeps every report of every
    case to the end of the session (the terminal's counts, pytest-html, JUnit): what a case holds beyond
    pytest's own is kept small (docs/benchmarks.md, figure 6)."""
    result = yield
    report = result.get_result()
    if "invariant_case" not in getattr(getattr(item, "callspec", None), "params", {}):  # not a case
        return
    finished = item.stash.get(OUTCOME, None)
    if finished is not None and report.when == "call":
        outcome, ids, origins = finished
        declared = item.function.rule  # type: ignore[attr-defined]
        report.invariant = outcome.as_dict() | _described(item.config, declared) | origins | {"fingerprint": ids}
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None:  # JUnit's failure message and the short summary: the count line, no "Failed: "
            crash.message = crash.message.removeprefix("Failed: ").split("\n")[0]
        del item.stash[OUTCOME]  # in the record now
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


def _described(config: pytest.Config, entry: Rule) -> dict[str, Any]:
    """``reporting.describe(entry)``, once per rule and run (each of its cases' records carries it)."""
    described = config.stash.setdefault(DESCRIBED, {})
    if entry.id not in described:
        described[entry.id] = reporting.describe(entry)
    return described[entry.id]


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, Any] | None:
    status = (getattr(report, "invariant", None) or {}).get("status")
    if report.when == "call" and report.failed and status == Status.ERROR:
        return "error", "E", "ERROR"  # could not run (a timeout, a database error): an error, not a failure
    if report.when != "call" or not report.passed:
        return None
    if status == Status.REPAIRED:
        return "repaired", "R", ("REPAIRED", {"green": True})
    if status == Status.WARNED:
        return "warned", "W", ("WARN", {"yellow": True})
    if status == Status.BASELINED:
        return "baselined", "B", ("BASELINED", {"yellow": True})
    return None


# (each case's record reaches ``results.Results.pytest_runtest_logreport``, registered at configure)


# --- the end: reports -------------------------------------------------------------------------------------


def checked_anything(config: pytest.Config, exitstatus: int) -> bool:
    """False for a run that stopped before any case ran: a usage error (a bad ``-k``, a mistyped path) or no
    rule selected.  Such a run writes no report and claims nothing."""
    stopped = (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.NO_TESTS_COLLECTED)
    return bool(results_of(config)) or exitstatus not in stopped


def _rule_records(run: Session, records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """invariants.json's ``rules``: each rule the run checked, with its SQL over the run's scope, every project
    together (compiled once per rule: a record without violations carries none)."""
    from antenna_invariants.check import compiled_sql
    from antenna_invariants.scope import NotApplicable, Scope

    scope = Scope(project=None, job=run.job, occurrence_ids=run.options.occurrence_ids, since=run.options.since)
    found = {}
    with db_access(run.config):
        for rule_id in sorted({r["rule"] for r in records}):
            entry = run.rules[rule_id]
            try:
                sql: str | None = compiled_sql(entry.violations(scope))
            except NotApplicable:
                sql = None
            found[rule_id] = reporting.rule_record(entry, sql)
    return found


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
    """Our JSON (and baseline), then JUnit and HTML (pytest's own plugins, written beside their final paths and
    renamed into place); a report that cannot be written (disk full, permissions) is one line naming the file
    and exit code 4, and the terminal summary still shows.  A run that checked nothing writes no report."""
    config, failed = session.config, None
    run = _session(config)
    controller = run if run is not None and not run.is_worker else None  # the controller writes the reports
    checked = checked_anything(config, exitstatus)
    records = results_of(config)
    if controller is not None and checked:
        try:
            meta = controller.run.as_dict()
            rules = _rule_records(controller, records)
            reporting.write_json(controller.options.reports / "invariants.json", records, meta, rules)
            reporting.write_summary(controller.options.reports / "summary.md", records, meta)
            if controller.options.write_baseline:
                baseline.write(controller.options.reports / "baseline.json", records, meta)
        except OSError as exc:
            failed = exc
    try:
        yield
        if controller is not None and records and Path(config.option.xmlpath or "").is_file():
            scope_option = controller.options.scope_option()
            junit.reshape(Path(config.option.xmlpath), records, controller.rules, config.getini("junit_family"),
                          lambda o: reporting.details(controller.rules[o["rule"]], o, scope_option))
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
    run = _session(config)
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
                               _detailed(config), exitstatus, run.options.scope_option())


def pytest_unconfigure(config: pytest.Config) -> None:
    run = _session(config)
    if run is not None:
        run.drop_snapshot()
