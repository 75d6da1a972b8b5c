"""The pytest plugin: options, the database, one test case per rule x project, repair, statuses, reports.

Two kinds of session share this plugin:
- an *invariants* session (`pytest invariants ...`) runs the rules against a live database (``DATABASE_URL``)
  or, without one, against a demo database on the embedded PostgreSQL.  It never creates, migrates or flushes
  a live database, and in check mode the connection itself is read-only;
- a *self-test* session (`pytest tests`) is plain pytest-django: a throwaway test database built by the
  mirror's migrations (or from Antenna's own schema.sql, see tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from antenna_invariants import baseline, html, reporting, runinfo, samples
from antenna_invariants import connection as conn
from antenna_invariants.connection import ConfigError
from antenna_invariants.layout import INVARIANTS_DIR, REPORTS_DIR, load_rules
from antenna_invariants.scope import NO_PROJECT, JobFootprint, Scope, parse_age, parse_ids, parse_since, parse_timeout
from antenna_invariants.snapshot import Snapshot
from antenna_invariants.snapshot import kind as snapshot_kind

LIVE = pytest.StashKey["LiveDatabase"]()
OUTCOME = pytest.StashKey["object"]()
FINGERPRINT = pytest.StashKey["list | None"]()


def pytest_addoption(parser):
    group = parser.getgroup("antenna-invariants")
    group.addoption("--project", action="append", metavar="ID[,ID]", help="check these projects (repeatable)")
    group.addoption("--job", metavar="ID", help="check what this job could have written (inferred, see README)")
    group.addoption("--occurrence", action="append", metavar="ID[,ID]", help="check these occurrences only")
    group.addoption("--repair", action="store_true", help="repair failing rules that have a repair")
    group.addoption("--all-projects", action="store_true", help="allow --repair without a scope")
    group.addoption("--repair-limit", type=int, metavar="N", help="change at most N rows per rule and project")
    group.addoption("--force", action="store_true", help="allow a repair to change more than invariants_repair_max_share")
    group.addoption(
        "--statement-timeout", default="5min", metavar="DURATION",
        help="cancel any query running longer (PostgreSQL units: 500ms, 30s, 5min; 0 for none; default 5min)",
    )
    group.addoption("--sample-size", type=int, default=20, metavar="N", help="ids shown per rule (0: all)")
    group.addoption("--reset-demo", action="store_true", help="rebuild the demo database")
    group.addoption("--snapshot", metavar="FILE", help="check this pg_dump backup (.sql.gz, .sql or -Fc), restored into a scratch database")
    group.addoption("--keep-snapshot", action="store_true", help="keep the snapshot's scratch database (its URL is printed)")
    group.addoption("--since", metavar="WHEN", help="check only rows changed since WHEN (2026-11-01, 2026-11-01T06:00, 24h, 7d)")
    parser.addini(
        "invariants_repair_max_share",
        default="10%",
        help="a repair changing more than this share of its table (and over 100 rows) needs --force",
    )
    parser.addini(
        "invariants_joblog_max_age",
        default="90d",
        help="job logs older than this (90d, 24h, 90min) violate JL1, and its repair deletes them",
    )
    parser.addini(
        "invariants_error_if",
        type="linelist",
        help='tolerated violations per rule, one "RULE >N" or "RULE >P%" per line (dbt\'s error_if)',
    )
    parser.addini(
        "invariants_warn_if", type="linelist",
        help='violations a rule lets pass without a warning, one "RULE >N" or "RULE >P%" per line (dbt\'s warn_if)',
    )
    parser.addini("invariants_severity", type="linelist", help='severity per rule, one "RULE warn" or "RULE error" per line')
    group.addoption("--reports", default=str(REPORTS_DIR), metavar="DIR", help="where reports and journals go")
    # reports (docs/reports.md)
    group.addoption("--antenna-url", metavar="URL", help="Antenna's web address: sample ids link into its UI")
    group.addoption("--write-baseline", action="store_true", help="write the violations found to REPORTS/baseline.json")
    group.addoption("--baseline", metavar="FILE", help="violations in this baseline do not fail; only new ones do")
    group.addoption("--compare", metavar="PREVIOUS.json", help="show each case's delta since this invariants.json")
    group.addoption("--sample-columns", action="append", metavar="COL[,COL]", help="allowlisted columns shown with sample ids")
    group.addoption("--store-failures", metavar="DIR", help="write one CSV per failing rule x scope: ids and allowlisted columns")


class LiveDatabase:
    """The database an invariants session checks, and the scope the user asked for."""

    def __init__(self, config):
        from antenna_invariants.journal import Journal
        from antenna_invariants.rules import Checks, Limits

        self.config = config
        self.repair = config.getoption("repair")
        self.all_projects = config.getoption("all_projects")  # also what lets a repair write global tables
        self.sample_size = config.getoption("sample_size")
        self.strict = _strict(config)
        self.projects = parse_ids(config.getoption("project"), "--project")
        job_ids = parse_ids([config.getoption("job")], "--job") or [None]
        if len(job_ids) > 1:
            raise ConfigError("--job takes one id")
        self.job_id = job_ids[0]
        self.since = parse_since(config.getoption("since"))
        self.snapshot = None
        if config.getoption("snapshot"):
            snapshot_kind(Path(config.getoption("snapshot")))  # missing or not a backup: before any connection
        elif config.getoption("keep_snapshot"):
            raise ConfigError("--keep-snapshot needs --snapshot FILE")
        self.occurrence_ids = parse_ids(config.getoption("occurrence"), "--occurrence")
        if self.sample_size < 0:
            raise ConfigError("--sample-size must be 0 (all) or more")
        self.statement_timeout = parse_timeout(config.getoption("statement_timeout"))
        self.limits = Limits(rows=config.getoption("repair_limit"), share=_share(config))
        if self.limits.rows is not None and self.limits.rows < 1:
            raise ConfigError("--repair-limit must be 1 or more")
        if config.getoption("force"):
            self.limits.share = None
        scoped = self.projects or self.job_id or self.occurrence_ids
        if self.repair and not scoped and not config.getoption("all_projects"):
            raise ConfigError("--repair needs a scope (--project, --job or --occurrence) or --all-projects")
        if self.repair and getattr(config.option, "numprocesses", None):
            raise ConfigError("--repair runs in one process (one journal, one transaction at a time): drop -n")
        self.job: JobFootprint | None = None
        self.demo = False
        self.description = ""
        self.reports = Path(config.getoption("reports"))
        reporting.ensure_writable(self.reports)
        self.journal = Journal(self.reports) if self.repair else None
        self.checks = Checks(self.sample_size)
        self.selected: set[tuple[str, str]] | None = None  # (rule, scope label) of the cases collected and kept
        self.staged: dict[str, str] = {}  # JUnit and HTML: final path -> where they are written first
        self.exitstatus: int | None = None  # the run's exit code once the reports are written
        self._report_options(config)

    def _report_options(self, config):
        """Baseline, trend and sample columns (docs/reports.md)."""
        self.sample_columns = samples.parse_columns(config.getoption("sample_columns"))
        self.antenna_url = html.antenna_url(config.getoption("antenna_url"))
        self.write_baseline = config.getoption("write_baseline")
        self.baseline = baseline.Baseline(Path(config.getoption("baseline"))) if config.getoption("baseline") else None
        self.previous = baseline.previous_counts(Path(config.getoption("compare"))) if config.getoption("compare") else None
        self.store_failures = Path(config.getoption("store_failures")) if config.getoption("store_failures") else None
        if self.store_failures is not None:
            reporting.ensure_writable(self.store_failures, "--store-failures")

    def scope_option(self) -> str | None:
        """The scope option that a rerun must repeat as given (a project case names its own project)."""
        if self.job_id is not None:
            return f"--job {self.job_id}"
        if self.occurrence_ids:
            return "--occurrence " + ",".join(map(str, self.occurrence_ids))
        return None

    def review(self, entry, scope: Scope, outcome) -> list[int] | None:
        """Allowlisted sample columns; the baseline's verdict; the ids a baseline keeps (returned)."""
        outcome.sample_rows = samples.sample_rows(entry, outcome.sample, self.sample_columns)
        judged = outcome.status == "failed" or (outcome.status == "warned" and self.strict)
        if not outcome.violations or not (self.write_baseline or (self.baseline and judged)):
            return None
        ids = baseline.fingerprint_ids(entry.violations(scope), outcome.violations, outcome.sample)
        if self.baseline and judged:
            self.baseline.judge(outcome, ids)
        return ids

    def prepare(self, database: dict | None = None):
        """Connect (restoring the snapshot or building the demo when needed), guard against drift, validate
        the scope.  A snapshot restored here is dropped again when this fails."""
        if database is None:
            database, self.demo = self._resolve()
        else:
            self.demo = database.pop("_demo", False)
        self.database = database
        try:
            self._connect()
        except ConfigError as exc:
            self.drop_snapshot()
            if self.snapshot is not None and self.keep_snapshot:
                raise ConfigError(f"{exc} (kept: {self.snapshot.name}; drop it with: {self.snapshot.drop_statements})") from None
            raise
        except BaseException:
            self.drop_snapshot()
            raise

    def _connect(self):
        from django.db import DatabaseError

        from antenna_invariants import demo, schema

        database = self.database
        try:
            with db_access(self.config):
                if self.demo and not hasattr(self.config, "workerinput"):
                    use_database(database)
                    demo.ensure(self.config.getoption("reset_demo"))
                session = conn.with_settings(database, statement_timeout=self.statement_timeout)
                use_database(session if self.repair else conn.read_only(session))
                schema.guard()
                if self.repair:
                    schema.refuse_read_only_server()
                self._validate_scope()
                self.description = self._describe()
                self.run = runinfo.Run(self)
        except DatabaseError as exc:
            raise ConfigError(f"database: {str(exc).strip().splitlines()[0]}") from None

    def _resolve(self) -> tuple[dict, bool]:
        import os

        url = os.environ.get("DATABASE_URL")
        if self.config.getoption("snapshot"):  # the file first: a missing one needs no server
            path = Path(self.config.getoption("snapshot"))
            server = conn.django_database(url) if url else None
            self.snapshot = Snapshot(path, server or conn.django_database(conn.embedded_url()), self.keep_snapshot)
            return self.snapshot.restore(), False
        if url:
            return conn.django_database(url), False
        entry = conn.django_database(conn.embedded_url())
        entry["NAME"] = conn.DEMO_DATABASE
        return entry, True

    def _validate_scope(self):
        from antenna_invariants.mirror.models import Occurrence, Project

        _require(Project, self.projects, "--project")
        _require(Occurrence, self.occurrence_ids, "--occurrence")
        if self.job_id is not None and self.occurrence_ids:
            raise ConfigError("--job and --occurrence are two scopes: give one of them")
        if self.job_id is not None:
            self.job = JobFootprint.infer(self.job_id)
            if self.projects and self.job.project_id not in self.projects:
                raise ConfigError(f"--job {self.job_id} belongs to project {self.job.project_id}, not to --project")
        if self.projects and self.occurrence_ids:
            outside = Occurrence.objects.filter(pk__in=self.occurrence_ids).exclude(project_id__in=self.projects)
            first = outside.order_by("pk").values_list("pk", "project_id").first()
            if first:
                raise ConfigError(f"--occurrence {first[0]} belongs to project {first[1]}, not to --project")
        self.project_cases = self._project_cases()

    def _project_cases(self) -> list:
        from antenna_invariants.mirror.models import Occurrence, Project

        if self.job is not None:
            candidates = [self.job.project_id]
        elif self.occurrence_ids:
            projects = Occurrence.objects.filter(pk__in=self.occurrence_ids).values_list("project_id", flat=True)
            candidates = sorted({p for p in projects if p is not None}) + [NO_PROJECT] * (None in projects)
        else:
            candidates = list(self.projects or Project.objects.order_by("pk").values_list("pk", flat=True))
            if not self.projects:
                candidates.append(NO_PROJECT)
        if self.projects:
            candidates = [p for p in candidates if p in self.projects]
        return candidates

    def _describe(self) -> str:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT current_database(), current_setting('server_version')")
            name, version = cursor.fetchone()
        where = "DEMO database on the embedded PostgreSQL (seeded defects, not your data)" if self.demo else "live database"
        if self.snapshot is not None:
            where = f"SNAPSHOT {str(self.snapshot.path)!r} restored into"
        mode = "REPAIR (journaled writes)" if self.repair else "check (read-only)"
        scope = self.job.describe() if self.job else f"{len(self.project_cases)} project case(s)"
        return f"antenna-invariants: {where} {name!r}, PostgreSQL {version}; mode: {mode}; scope: {scope}"

    def check(self, entry, scope: Scope):
        """The case's check, grouped with the other selected cases of its rule (``-k``, node ids and
        ``--deselect`` narrow the grouped statement too)."""
        scopes = [s for s in self.scopes_for(entry) if self.selected is None or (entry.id, s.label) in self.selected]
        return self.checks.check(entry, scope, scopes or [scope])

    def scopes_for(self, entry) -> list[Scope]:
        projects = [None] if entry.is_global else self.project_cases
        return [Scope(project=p, job=self.job, occurrence_ids=self.occurrence_ids, since=self.since) for p in projects]

    @property
    def keep_snapshot(self) -> bool:
        return self.config.getoption("keep_snapshot")

    def drop_snapshot(self):
        if self.snapshot is not None and not hasattr(self.config, "workerinput"):
            self.snapshot.drop()


def _share(config) -> float:
    value = str(config.getini("invariants_repair_max_share")).strip()
    try:
        share = float(value.removesuffix("%")) / 100
    except ValueError:
        share = -1.0
    if not value.endswith("%") or not 0 < share <= 1:
        raise ConfigError(f"invariants_repair_max_share: {value!r} is not a share like 10%")
    return share


def _strict(config) -> bool:
    """pytest's own --strict: the ``strict`` ini on pytest 9, a plain option (alias of --strict-markers) on 8."""
    try:
        return bool(config.getini("strict"))
    except ValueError:
        return bool(config.getoption("strict", False))


def _require(model, ids, option: str):
    """Every id names an existing row, or a one-line error naming the first that does not."""
    found = set(model.objects.filter(pk__in=ids or ()).values_list("pk", flat=True))
    missing = [i for i in ids or () if i not in found]
    if missing:
        raise ConfigError(f"{option} {missing[0]}: no such {model._meta.model_name}")


def use_database(entry: dict):
    """Point Django's default connection at ``entry`` (before or between connections)."""
    from django.conf import settings
    from django.db import connections

    connections.close_all()
    for target in {id(d): d for d in (settings.DATABASES["default"], connections["default"].settings_dict)}.values():
        target.update({k: v for k, v in entry.items() if k != "TEST"})


def db_access(config):
    """Database access outside a test (pytest-django blocks it by default)."""
    try:
        from pytest_django.plugin import blocking_manager_key
    except ImportError:  # pytest-django before 4.9 (Antenna pins 4.5.2): one blocker per process
        from pytest_django.plugin import _blocking_manager

        return _blocking_manager.unblock()
    return config.stash[blocking_manager_key].unblock()


def _is_invariants_session(config) -> bool:
    paths = [Path(str(arg).split("::")[0]) for arg in config.args]
    resolved = [(p if p.is_absolute() else Path(config.invocation_params.dir) / p).resolve() for p in paths]
    inside = [p == INVARIANTS_DIR or INVARIANTS_DIR in p.parents for p in resolved]
    if any(inside) and not all(inside):
        raise pytest.UsageError("run the invariants and the self-tests in separate pytest sessions")
    return bool(inside) and all(inside)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    import os

    from antenna_invariants.rules import RULES, SETTINGS, set_severities, set_thresholds

    try:
        if not _is_invariants_session(config):
            if not os.environ.get("DATABASE_URL"):
                use_database(conn.django_database(conn.embedded_url()))
            return
        load_rules()
        set_thresholds(config.getini("invariants_error_if"))
        set_thresholds(config.getini("invariants_warn_if"), "warn_if")
        set_severities(config.getini("invariants_severity"))
        SETTINGS["joblog_max_age"] = parse_age(config.getini("invariants_joblog_max_age"), "invariants_joblog_max_age")
        live = LiveDatabase(config)
        worker_db = getattr(config, "workerinput", {}).get("invariants_database")
        live.prepare(json.loads(worker_db) if worker_db else None)
    except ConfigError as exc:
        raise pytest.UsageError(conn.mask(str(exc), config.getoption("antenna_url", None))) from None
    config.stash[LIVE] = live
    for domain in sorted({r.domain for r in RULES.values()}):
        config.addinivalue_line("markers", f"{domain}: invariants of the {domain} domain")
    for entry in RULES.values():
        config.addinivalue_line("markers", f"{entry.id}: {entry.doc[:80]}")
    for name, meaning in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")
    reporting.SCOPE = live.scope_option()
    reporting.default_report_paths(config, live.reports)
    if not hasattr(config, "workerinput"):
        live.staged = reporting.stage(config)
    reporting.PREVIOUS = live.previous
    if config.pluginmanager.hasplugin("html"):
        planned = sum(len(live.scopes_for(entry)) for entry in RULES.values())
        report = html.HtmlReport(
            live.run.title, RULES, antenna_url=live.antenna_url, compare=live.previous is not None, planned=planned
        )
        config.pluginmanager.register(report, "antenna-invariants-html")


@pytest.hookimpl(optionalhook=True)
def pytest_metadata(metadata, config):
    """The HTML environment table: what was checked and with what (provenance); secrets masked."""
    live = config.stash.get(LIVE, None)
    if live is not None:
        metadata.update(live.run.environment())
    runinfo.redact(metadata, live.run.secrets if live is not None else ())


def _detailed(config) -> bool:
    """-v, -rA or an explicit --tb: pytest's full output; by default the terminal fits on a screen."""
    return config.option.verbose > 0 or "A" in (config.option.reportchars or "") or config.option.tbstyle != "auto"


def pytest_sessionstart(session):
    from _pytest.junitxml import xml_key

    live = session.config.stash.get(LIVE, None)
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    if live is not None and terminal is not None and not _detailed(session.config):
        # the summary table and the first failures in full replace pytest's failure sections (reports: all)
        terminal.summary_failures = terminal.summary_errors = lambda: None
        terminal.reportchars = ""
    xml = session.config.stash.get(xml_key, None)
    if live is not None and xml is not None:  # the controller (workers write no JUnit)
        for name, value in live.run.junit_properties().items():
            xml.add_global_property(name, value)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under ``-n`` (xdist's default ``--dist load``), send every case of a rule to one worker: the rule's
    first case checks all its projects in one statement, which would otherwise run on every worker that
    got one of its cases (docs/benchmarks.md, figure 4)."""
    if config.stash.get(LIVE, None) is None or config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByRule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid.split("[", 1)[0]  # the rule's test, without its project parameter

    return ByRule(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    live = node.config.stash.get(LIVE, None)
    if live is not None:
        node.workerinput["invariants_database"] = json.dumps(live.database | {"_demo": live.demo})


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


def rule_marks(entry) -> list:
    names = [entry.domain, entry.id, entry.severity]
    names += ["repairable"] * (entry.repair_func is not None) + [RISK_MARKS.get(entry.risk)] + ["global"] * entry.is_global
    return [getattr(pytest.mark, name) for name in names if name]


def _leaves_out_global(config) -> bool:
    """A --project run checks that project's rows: rules on global tables stay out unless asked for, by ``-m``
    or ``-k`` naming ``global`` or one of those rules."""
    from antenna_invariants.rules import RULES

    live = config.stash.get(LIVE, None)
    asked = set(re.findall(r"\w+", f"{config.option.markexpr or ''} {config.option.keyword or ''}"))
    return bool(live and live.projects and not asked & ({"global"} | {r.id for r in RULES.values() if r.is_global}))


def pytest_report_header(config):
    live = config.stash.get(LIVE, None)
    if not live:
        return None
    lines = [live.description, live.run.header(), *live.run.incremental_header()]
    if _leaves_out_global(config):
        from antenna_invariants.rules import RULES

        left_out = ", ".join(sorted(r.id for r in RULES.values() if r.is_global))
        lines.append(f"global rules left out of this --project run: {left_out} (add -m global to check them)")
    return lines


def pytest_generate_tests(metafunc):
    entry = getattr(metafunc.function, "rule", None)
    live = metafunc.config.stash.get(LIVE, None)
    if entry is None or "invariant_case" not in metafunc.fixturenames:
        return
    if live is None:
        raise pytest.UsageError("rules run in an invariants session: pytest invariants [options]")
    marks = rule_marks(entry)
    params = [pytest.param(s, id=f"{entry.id}-{s.label}", marks=marks) for s in live.scopes_for(entry)]
    metafunc.parametrize("invariant_case", params, indirect=True)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Run the rules in dependency order (``rules.RUN_ORDER``: structure and determinations before the
    cached counts, so one --repair pass leaves nothing a second could fix), and remember which rule x scope
    cases survived -k, -m and --deselect (trylast: after pytest deselects)."""
    from antenna_invariants.rules import run_order

    live = config.stash.get(LIVE, None)
    if live is not None and _leaves_out_global(config):
        kept = [i for i in items if i.get_closest_marker("global") is None]
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("global") is not None])
        items[:] = kept
    if live is not None:
        items.sort(key=lambda item: run_order(getattr(getattr(item, "function", None), "rule", None)))
        live.selected = {
            (item.function.rule.id, item.callspec.params["invariant_case"].label)
            for item in items
            if "invariant_case" in getattr(getattr(item, "callspec", None), "params", {})
        }


class Case:
    """One rule x scope, run inside a test: check, maybe repair, record the outcome, pass or fail."""

    def __init__(self, request, live: LiveDatabase, scope: Scope):
        self.request, self.live, self.scope = request, live, scope

    def run(self, entry):
        from django.db import DatabaseError

        from antenna_invariants.followups import stale_counts
        from antenna_invariants.rules import Outcome, RepairRefused, repair

        outcome = Outcome(entry.id, self.scope.label, entry.severity)
        try:
            outcome = retried(lambda: self.live.check(entry, self.scope))
            repairable = outcome.status == "failed" and self.live.repair and entry.repair_func is not None
            if repairable and entry.is_global and not self.live.all_projects:  # scope means scope
                outcome.message = f"not repaired: {entry.id}'s table is global and this repair run is scoped"
            elif repairable:
                self.live.checks.forget_counts()
                repair(entry, self.scope, outcome, self.live.journal, self.live.limits)
                outcome.stale = stale_counts(self.live.journal.touched(entry.id, self.scope.label))
            self.request.node.stash[FINGERPRINT] = self.live.review(entry, self.scope, outcome)
            if self.live.store_failures is not None and outcome.status in ("failed", "warned", "baselined"):
                samples.store_failures(self.live.store_failures, entry, self.scope, outcome.as_dict())
        except RepairRefused as exc:
            outcome.message = f"repair refused: {exc}"
        except DatabaseError as exc:
            outcome.status, outcome.message = "error", _database_error(exc, self.live.statement_timeout)
        self.request.node.stash[OUTCOME] = outcome
        for key in ("rule", "project", "status", "violations", "checked", "fixed", "unfixable", "changed_under_repair",
                    "baseline", "new"):
            if getattr(outcome, key) is not None:
                self.request.node.user_properties.append((key, getattr(outcome, key)))
        if outcome.status == "skipped":
            pytest.skip(outcome.message)
        if outcome.status == "error":
            pytest.fail(f"{entry.id} could not run: {outcome.message}", pytrace=False)
        if outcome.status == "failed" or (outcome.status == "warned" and self.live.strict):
            lines = [reporting.failure_message(entry, outcome.as_dict()), outcome.message]  # message: a refused repair
            pytest.fail("\n".join(filter(None, lines)), pytrace=False)


RECOVERY_RETRIES = 3  # a check cancelled by a hot standby is tried this many more times
RECOVERY_BACKOFF = 0.5  # seconds before the first retry, doubled each time


def _conflict_with_recovery(exc) -> bool:
    """A query a hot standby cancelled because replay needed its rows (SQLSTATE 40001 on a replica)."""
    from psycopg.errors import SerializationFailure

    return isinstance(exc.__cause__, SerializationFailure) and "conflict with recovery" in str(exc)


def retried(check):
    """``check()``, retried with a short backoff when the standby cancels it; the last error stands."""
    import time

    from django.db import DatabaseError

    for attempt in range(RECOVERY_RETRIES + 1):
        try:
            return check()
        except DatabaseError as exc:
            if not _conflict_with_recovery(exc) or attempt == RECOVERY_RETRIES:
                raise
            time.sleep(RECOVERY_BACKOFF * 2**attempt)


def _database_error(exc, timeout: str) -> str:
    from antenna_invariants.rules import timed_out

    if timed_out(exc):
        return f"timed out: a query ran longer than --statement-timeout {timeout}"
    first = conn.mask(str(exc).strip().splitlines()[0])
    if _conflict_with_recovery(exc):
        return f"cancelled by the standby (conflict with recovery) {RECOVERY_RETRIES + 1} times: {first}"
    return first


@pytest.fixture
def invariant_case(request, django_db_blocker):
    live = request.config.stash[LIVE]
    with django_db_blocker.unblock():
        yield Case(request, live, request.param)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    result = yield
    report = result.get_result()
    outcome = item.stash.get(OUTCOME, None)
    if outcome is not None and report.when == "call":
        report.invariant = outcome.as_dict() | describe(item.function.rule) | {"fingerprint": item.stash.get(FINGERPRINT, None)}
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None:  # JUnit's failure message and the short summary: the count line, no "Failed: "
            crash.message = crash.message.removeprefix("Failed: ").split("\n")[0]


def describe(entry) -> dict:
    """What a JSON record says about its rule (docs/reports.md)."""
    risk = {"L": "low", "M": "medium", "H": "high"}.get(entry.risk)
    return {"title": entry.title, "table": entry.model._meta.db_table, "risk": risk,
            "repairable": entry.repair_func is not None, "deletes": entry.deletes, "docs": entry.anchor}


def pytest_report_teststatus(report, config):
    status = (getattr(report, "invariant", None) or {}).get("status")
    if report.when == "call" and report.failed and status == "error":
        return "error", "E", "ERROR"  # could not run (a timeout, a database error): an error, not a failure
    if report.when != "call" or not report.passed:
        return None
    if status == "repaired":
        return "repaired", "R", ("REPAIRED", {"green": True})
    if status == "warned":
        return "warned", "W", ("WARN", {"yellow": True})
    if status == "baselined":
        return "baselined", "B", ("BASELINED", {"yellow": True})
    return None


def pytest_runtest_logreport(report):
    if report.when == "call" and getattr(report, "invariant", None):
        report.invariant["fails_run"] = report.failed
        report.invariant["delta"] = baseline.delta(report.invariant, reporting.PREVIOUS)
        reporting.OUTCOMES.append(report.invariant)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    live = config.stash.get(LIVE, None)
    if live is not None and not hasattr(config, "workerinput"):
        if live.snapshot is not None:
            kept = "dropped at the end of the run"
            if live.keep_snapshot:
                kept = f"kept: {conn.mask(live.snapshot.url)} (drop it with: {live.snapshot.drop_statements})"
            terminalreporter.write_line(f"snapshot database {live.snapshot.name}: {kept}")
        exitstatus = live.exitstatus if live.exitstatus is not None else exitstatus
        if not checked_anything(exitstatus):  # exit 4 or 5 before any case ran: no summary, no verdict
            terminalreporter.write_line(
                f"antenna invariants: nothing was checked (exit code {int(exitstatus)}); "
                f"the reports of the previous run are left as they were"
            )
            return
        reporting.terminal_summary(terminalreporter, live.reports, _detailed(config), exitstatus)


def pytest_unconfigure(config):
    live = config.stash.get(LIVE, None)
    if live is not None:
        live.drop_snapshot()


def _reshape_junit(config):
    from antenna_invariants import junit
    from antenna_invariants.rules import RULES

    family = config.getini("junit_family")
    junit.reshape(Path(config.option.xmlpath), reporting.OUTCOMES, RULES, family,
                  lambda o: reporting.details(RULES[o["rule"]], o))


def checked_anything(exitstatus) -> bool:
    """False for a run that stopped before any case ran: a usage error (a bad ``-k``, a mistyped path) or no
    rule selected.  Such a run writes no report and claims nothing."""
    return bool(reporting.OUTCOMES) or exitstatus not in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.NO_TESTS_COLLECTED)


def _report_writers(config):
    """pytest's JUnit writer and pytest-html's report (each with the attribute that holds its path)."""
    from _pytest.junitxml import xml_key

    xml = config.stash.get(xml_key, None)
    if xml is not None:
        yield xml, "logfile"
    for plugin in config.pluginmanager.get_plugins():
        if type(plugin).__module__.startswith("pytest_html.") and hasattr(plugin, "_report_path"):
            yield plugin, "_report_path"


def _settle_reports(config, staged: dict[str, str], checked: bool):
    """Published reports are named by their final paths in the terminal; a run that checked nothing unregisters
    the writers, so no "generated" line names a report that was not written."""
    from _pytest.junitxml import xml_key

    finals = {os.path.abspath(temp): final for final, temp in staged.items()}
    for writer, attribute in list(_report_writers(config)):
        if not checked:
            config.pluginmanager.unregister(writer)
            if attribute == "logfile":
                del config.stash[xml_key]
            continue
        final = finals.get(os.path.abspath(getattr(writer, attribute)))
        if final is not None:
            setattr(writer, attribute, os.path.abspath(final) if attribute == "logfile" else Path.cwd() / final)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session, exitstatus):
    """Our JSON (and baseline), then JUnit and HTML (pytest's own plugins, written beside their final paths and
    renamed into place); a report that cannot be written (disk full, permissions) is one line naming the file
    and exit code 4, and the terminal summary still shows.  A run that checked nothing writes no report."""
    config, failed = session.config, None
    live = config.stash.get(LIVE, None)
    controller = live is not None and not hasattr(config, "workerinput")
    checked = checked_anything(exitstatus)
    if controller and checked:
        try:
            run = live.run.as_dict()
            reporting.write_json(live.reports / "invariants.json", run)
            reporting.write_summary(live.reports / "summary.md", run)
            if live.write_baseline:
                baseline.write(live.reports / "baseline.json", reporting.OUTCOMES, run)
        except OSError as exc:
            failed = exc
    try:
        yield
        if controller and reporting.OUTCOMES and Path(config.option.xmlpath or "").is_file():
            _reshape_junit(config)
    except OSError as exc:
        failed = failed or exc
    if controller:
        try:
            reporting.publish(live.staged, checked and failed is None)
        except OSError as exc:
            failed = failed or exc
        _settle_reports(config, live.staged, checked)
    if failed is not None:
        sys.stderr.write(reporting.write_failed(failed, live.staged if live else None) + "\n")
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
    if controller:
        live.exitstatus = session.exitstatus
