"""The run (an invariants session): which database (live, demo or snapshot), connecting read-only or for a
repair, guarding against schema drift, validating the scope and projecting it into test cases.

It never creates, migrates or flushes a live database, and in check mode the connection itself is read-only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from django.db import DatabaseError, connection

from antenna_invariants import connection as conn
from antenna_invariants import demo, reporting, runinfo, schema
from antenna_invariants.check import compiled_sql
from antenna_invariants.errors import ConfigError
from antenna_invariants.journal import Journal
from antenna_invariants.layout import INVARIANTS_DIR
from antenna_invariants.options import PER_RULE_ABOVE, RunOptions
from antenna_invariants.rules import Rule
from antenna_invariants.runchecks import Checks
from antenna_invariants.scope import NO_PROJECT, JobFootprint, NotApplicable, ProjectKey, Scope
from antenna_invariants.snapshot import Snapshot


def is_invariants_session(config: pytest.Config) -> bool:
    """Whether pytest was asked for the invariants (``pytest invariants ...``), not the self-tests; asked for
    both, a usage error."""
    paths = [Path(str(arg).split("::")[0]) for arg in config.args]
    resolved = [(p if p.is_absolute() else Path(config.invocation_params.dir) / p).resolve() for p in paths]
    inside = [p == INVARIANTS_DIR or INVARIANTS_DIR in p.parents for p in resolved]
    if any(inside) and not all(inside):
        raise pytest.UsageError("run the invariants and the self-tests in separate pytest sessions")
    return bool(inside) and all(inside)


def db_access(config: pytest.Config) -> AbstractContextManager[None]:
    """Database access outside a test (pytest-django blocks it by default).

    pytest-django hands its blocker out as the ``django_db_blocker`` fixture, but a run connects before any
    fixture exists (at configure time: the header and the collection need the database), so the blocker is
    taken from pytest-django's plugin as registered with pytest (``pluginmanager.get_plugin("django")``):
    on ``config.stash`` from 4.9, a module attribute before (4.5.2 is Antenna's pin)."""
    django_plugin: Any = config.pluginmanager.get_plugin("django")
    key = getattr(django_plugin, "blocking_manager_key", None)
    blocker = config.stash[key] if key is not None else django_plugin._blocking_manager
    return blocker.unblock()


class Session:
    """The database an invariants session checks, and the scope the user asked for."""

    def __init__(self, config: pytest.Config, options: RunOptions, rules: dict[str, Rule]):
        self.config, self.options = config, options
        self.rules = rules  # the run's rules: the registry's, with the ini's severities and thresholds
        self.is_worker = hasattr(config, "workerinput")
        self.snapshot: Snapshot | None = None
        self.database: dict[str, Any] = {}
        self.demo = False
        self.job: JobFootprint | None = None
        self.project_cases: list[ProjectKey] = []
        self.description = ""
        self._run: runinfo.Run | None = None
        self.journal = Journal(options.reports) if options.repair else None
        self.checks = Checks(options.sample_size, rules, strict=options.strict)
        self.selected: set[tuple[str, str]] | None = None  # (rule, scope label) of the cases collected and kept
        self.grouped: dict[str, list[Scope]] = {}  # rule id -> its selected scopes, computed once (not per case)
        self.junit_properties = config.getini("junit_family") == "xunit1"  # per-testcase properties (reports.md)
        self.staged: dict[str, str] = {}  # JUnit and HTML: final path -> where they are written first
        self.exitstatus: int | None = None  # the run's exit code once the reports are written

    @property
    def run(self) -> runinfo.Run:
        """The run's metadata, once ``prepare`` has connected."""
        if self._run is None:
            raise RuntimeError("the invariants session is not prepared yet")
        return self._run

    # --- connecting ---------------------------------------------------------------------------------------

    def prepare(self, database: dict[str, Any] | None = None) -> None:
        """Connect (restoring the snapshot or building the demo when needed), guard against drift, validate
        the scope.  ``database``: the controller's, handed to an xdist worker.  A snapshot restored here is
        dropped again when this fails."""
        if database is None:
            database, self.demo = self._resolve()
        else:
            self.demo = database.pop("_demo", False)
        self.database = database
        try:
            self._connect()
        except ConfigError as exc:
            self.drop_snapshot()
            if self.snapshot is not None and self.options.keep_snapshot:
                kept = f"kept: {self.snapshot.name}; drop it with: {self.snapshot.drop_statements}"
                raise ConfigError(f"{exc} ({kept})") from None
            raise
        except BaseException:
            self.drop_snapshot()
            raise

    def handoff(self) -> dict[str, Any]:
        """What an xdist worker needs to connect to the same database (``prepare(database)``)."""
        return self.database | {"_demo": self.demo}

    def _resolve(self) -> tuple[dict[str, Any], bool]:
        url = conn.database_url()
        if self.options.snapshot is not None:  # the file first: a missing one needs no server
            server = conn.django_database(url) if url else None
            self.snapshot = Snapshot(
                self.options.snapshot, server or conn.django_database(conn.embedded_url()), self.options.keep_snapshot
            )
            return self.snapshot.restore(), False
        if url:
            return conn.django_database(url), False
        database = conn.django_database(conn.embedded_url())
        database["NAME"] = conn.DEMO_DATABASE
        return database, True

    def _connect(self) -> None:
        options = self.options
        try:
            with db_access(self.config):
                if self.demo and not self.is_worker:
                    conn.use_database(self.database)
                    demo.ensure(options.reset_demo)
                session = conn.with_settings(self.database, statement_timeout=options.statement_timeout)
                conn.use_database(session if options.repair else conn.read_only_settings(session))
                schema.guard()
                if options.repair:
                    schema.refuse_read_only_server()
                self._validate_scope()
                self.description = self._describe()
                self._run = runinfo.Run(self._facts())
        except DatabaseError as exc:
            raise ConfigError(f"database: {str(exc).strip().splitlines()[0]}") from None

    def _facts(self) -> runinfo.RunFacts:
        options = self.options
        scope = runinfo.scope_text(self.job, options.occurrence_ids, options.projects, len(self.project_cases))
        in_full = tuple(rule_id for rule_id, entry in self.rules.items() if entry.incremental is None)
        return runinfo.RunFacts(self.database, self.demo, options.repair, scope, options.since, in_full)

    # --- the scope ------------------------------------------------------------------------------------------

    def _validate_scope(self) -> None:
        from antenna_invariants.mirror.models import Occurrence, Project  # Django's models: once apps are ready

        options = self.options
        _require(Project, options.projects, "--project")
        _require(Occurrence, options.occurrence_ids, "--occurrence")
        if options.job_id is not None and options.occurrence_ids:
            raise ConfigError("--job and --occurrence are two scopes: give one of them")
        if options.job_id is not None:
            self.job = JobFootprint.infer(options.job_id)
            if options.projects and self.job.project_id not in options.projects:
                raise ConfigError(f"--job {options.job_id} belongs to project {self.job.project_id}, not to --project")
        if options.projects and options.occurrence_ids:
            outside = Occurrence.objects.filter(pk__in=options.occurrence_ids).exclude(project_id__in=options.projects)
            first = outside.order_by("pk").values_list("pk", "project_id").first()
            if first:
                raise ConfigError(f"--occurrence {first[0]} belongs to project {first[1]}, not to --project")
        self.project_cases = self._project_cases()

    def _project_cases(self) -> list[ProjectKey]:
        from antenna_invariants.mirror.models import Occurrence, Project

        projects, occurrence_ids = self.options.projects, self.options.occurrence_ids
        candidates: list[ProjectKey]
        if self.job is not None:
            candidates = [self.job.project_id]
        elif occurrence_ids:
            found = Occurrence.objects.filter(pk__in=occurrence_ids).values_list("project_id", flat=True)
            candidates = [*sorted({p for p in found if p is not None})] + [NO_PROJECT] * (None in found)
        else:
            candidates = list(projects or Project.objects.order_by("pk").values_list("pk", flat=True))
            if not projects:
                candidates.append(NO_PROJECT)
        if projects:
            candidates = [p for p in candidates if p in projects]
        return candidates

    def _describe(self) -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_database(), current_setting('server_version')")
            name, version = cursor.fetchone()
        if self.demo:
            where = "DEMO database on the embedded PostgreSQL (seeded defects, not your data)"
        else:
            where = "live database"
        if self.snapshot is not None:
            where = f"SNAPSHOT {str(self.snapshot.path)!r} restored into"
        mode = "REPAIR (journaled writes)" if self.options.repair else "check (read-only)"
        scope = self.job.describe() if self.job else f"{len(self.project_cases)} project case(s)"
        return f"antenna-invariants: {where} {name!r}, PostgreSQL {version}; mode: {mode}; scope: {scope}"

    def scopes_for(self, entry: Rule) -> list[Scope]:
        """The rule's cases: one global scope, or one per project case."""
        projects: list[ProjectKey | None] = [None] if entry.is_global else list(self.project_cases)
        options = self.options
        return [Scope(project=p, job=self.job, occurrence_ids=options.occurrence_ids, since=options.since)
                for p in projects]

    def planned_cases(self) -> int:
        """How many cases the run collects (before -k, -m and --deselect)."""
        return sum(1 if entry.is_global else len(self.project_cases) for entry in self.rules.values())

    def planned_tests(self) -> int:
        """How many pytest tests the run collects (before -k, -m and --deselect): its cases, or its rules."""
        return len(self.rules) if self.per_rule() else self.planned_cases()

    def per_rule(self) -> bool:
        """One test per rule, covering its projects, rather than one per rule x project (``--tests-per``; auto:
        per rule beyond ``PER_RULE_ABOVE`` cases, where pytest's own memory per test would dominate the run)."""
        chosen = self.options.tests_per
        return chosen == "rule" or (chosen == "auto" and self.planned_cases() > PER_RULE_ABOVE)

    def leaves_out_global(self) -> bool:
        """A --project run checks that project's rows: rules on global tables stay out unless asked for, by ``-m``
        or ``-k`` naming ``global`` or one of those rules."""
        return bool(self.options.projects and not self.options.named & {"global", *self.global_rules()})

    def global_rules(self) -> list[str]:
        """The ids of the rules on global tables."""
        return sorted(rule_id for rule_id, entry in self.rules.items() if entry.is_global)

    def selected_scopes(self, entry: Rule) -> list[Scope]:
        """The rule's cases that survived ``-k``, node ids and ``--deselect`` (its grouped check covers these),
        listed once per rule: every case asks, and a list per case cost a run time in the square of its cases."""
        if entry.id not in self.grouped:
            self.grouped[entry.id] = [s for s in self.scopes_for(entry)
                                      if self.selected is None or (entry.id, s.label) in self.selected]
        return self.grouped[entry.id]

    # --- the end --------------------------------------------------------------------------------------------

    def rule_records(self, records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """invariants.json's ``rules``: each rule the run checked, with its SQL over the run's scope, every project
        together (compiled once per rule: a record without violations carries none)."""
        scope = Scope(project=None, job=self.job, occurrence_ids=self.options.occurrence_ids, since=self.options.since)
        found = {}
        with db_access(self.config):
            for rule_id in sorted({r["rule"] for r in records}):
                entry = self.rules[rule_id]
                try:
                    sql: str | None = compiled_sql(entry.violations(scope))
                except NotApplicable:
                    sql = None
                found[rule_id] = reporting.rule_record(entry, sql)
        return found

    def drop_snapshot(self) -> None:
        if self.snapshot is not None and not self.is_worker:
            self.snapshot.drop()


def _require(model: Any, ids: tuple[int, ...] | None, option: str) -> None:
    """Every id names an existing row, or a one-line error naming the first that does not."""
    found = set(model.objects.filter(pk__in=ids or ()).values_list("pk", flat=True))
    missing = [i for i in ids or () if i not in found]
    if missing:
        raise ConfigError(f"{option} {missing[0]}: no such {model._meta.model_name}")


SESSION = pytest.StashKey[Session]()


def session_of(config: pytest.Config) -> Session | None:
    """The run's ``Session`` (None outside an invariants session)."""
    return config.stash.get(SESSION, None)
