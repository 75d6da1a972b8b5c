"""Self-test database: built by the mirror's migrations, or (``--on-antenna-schema``) from Antenna's real DDL.

Either way it is a throwaway database on the embedded PostgreSQL or on ``DATABASE_URL``'s server, and every
test runs in a transaction that is rolled back (pytest-django's ``db``).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from antenna_invariants.connection import ROOT, url_for

DEFAULT_SCHEMA = ROOT.parent / "shared" / "antenna" / "schema.sql"


def pytest_addoption(parser):
    parser.addoption(
        "--antenna-schema",
        default=os.environ.get("ANTENNA_SCHEMA_SQL", str(DEFAULT_SCHEMA)),
        help="Antenna's schema.sql (pg_dump of all its migrations), for the compatibility tests",
    )
    parser.addoption(
        "--on-antenna-schema", action="store_true", help="build the self-test database from --antenna-schema"
    )


@pytest.fixture(scope="session")
def antenna_schema(request) -> Path:
    path = Path(request.config.getoption("antenna_schema"))
    if not path.is_file():
        pytest.skip(f"Antenna's schema.sql not found at {path} (set --antenna-schema or ANTENNA_SCHEMA_SQL)")
    return path


def create_database_from_schema(settings: dict, name: str, schema_sql: Path):
    with psycopg.connect(url_for(settings, "postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(url_for(settings, name), autocommit=True) as target:
        target.execute(schema_sql.read_text(encoding="utf-8"))
        target.execute("SELECT pg_catalog.set_config('search_path', 'public', false)")


def drop_database(settings: dict, name: str):
    with psycopg.connect(url_for(settings, "postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def django_db_setup(request, django_db_blocker, django_db_modify_db_settings):
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    if not request.config.getoption("on_antenna_schema"):
        with django_db_blocker.unblock():
            names = setup_databases(verbosity=0, interactive=False, keepdb=False)
        yield
        with django_db_blocker.unblock():
            teardown_databases(names, verbosity=0)
        return

    schema_sql = request.getfixturevalue("antenna_schema")
    settings = connection.settings_dict
    original, name = settings["NAME"], settings["TEST"]["NAME"] + "_antenna"
    create_database_from_schema(settings, name, schema_sql)
    with django_db_blocker.unblock():
        connection.close()
        settings["NAME"] = name
    yield
    with django_db_blocker.unblock():
        connection.close()
        settings["NAME"] = original
        drop_database(settings, name)


@pytest.fixture
def on_antenna_schema(request) -> bool:
    return request.config.getoption("on_antenna_schema")


class Invariants:
    """Runs rules the way the plugin does, inside the test's transaction."""

    def __init__(self, journal_dir: Path):
        from antenna_invariants.layout import load_rules

        load_rules()
        self.journal_dir = journal_dir

    def scope(self, project=None, job=None, occurrences=None):
        from antenna_invariants.scope import JobFootprint, Scope

        project = getattr(project, "pk", project)
        footprint = JobFootprint.infer(getattr(job, "pk", job)) if job is not None else None
        ids = tuple(getattr(o, "pk", o) for o in occurrences) if occurrences is not None else None
        return Scope(project=project, job=footprint, occurrence_ids=ids)

    def check(self, rule_id, **scope):
        from antenna_invariants.check import check
        from antenna_invariants.rules import RULES

        return check(RULES[rule_id], self.scope(**scope), sample_size=0)

    def violators(self, rule_id, **scope) -> set[int]:
        return set(self.check(rule_id, **scope).sample)

    def repair(self, rule_id, **scope):
        from antenna_invariants.journal import Journal
        from antenna_invariants.repair import repair
        from antenna_invariants.rules import RULES

        entry, where = RULES[rule_id], self.scope(**scope)
        outcome = self.check(rule_id, **scope)
        self.journal = Journal(self.journal_dir)
        return repair(entry, where, outcome, self.journal)

    def assert_scoped(self, rule_id, plant):
        """``plant(deployment)`` in two deployments of one project, in one of another project and in one without
        a project: each project case reports exactly its own rows; for a table scoped by occurrence, a case
        narrowed to the second planting's occurrences reports only its rows; and repairing the one project
        (when the rule repairs) fixes exactly its rows and leaves every other case's rows as they were."""
        from antenna_invariants.rules import RULES
        from antenna_invariants.scope import NO_PROJECT
        from fixtures import factories as f

        entry = RULES[rule_id]
        mine, other, unassigned = f.DeploymentFactory(), f.DeploymentFactory(), f.DeploymentFactory(project=None)
        first, second = _ids(plant(mine)), _ids(plant(f.DeploymentFactory(project=mine.project)))
        planted = {mine.project_id: first | second, other.project_id: _ids(plant(other)),
                   NO_PROJECT: _ids(plant(unassigned))}
        for project, expected in planted.items():
            assert self.violators(rule_id, project=project) == expected, project
        path = entry.model.scope_paths.get("occurrences")
        occurrences = set(entry.model.objects.filter(pk__in=second).values_list(path, flat=True)) if path else set()
        if occurrences - {None}:
            narrowed = entry.model.objects.filter(pk__in=first | second).filter(**{f"{path}__in": occurrences - {None}})
            expected = set(narrowed.values_list("pk", flat=True))
            assert self.violators(rule_id, project=mine.project_id, occurrences=occurrences - {None}) == expected
            assert expected
            assert not expected & first
        if entry.repair_func is not None:
            theirs = [*planted[other.project_id], *planted[NO_PROJECT]]
            before = list(entry.model.objects.filter(pk__in=theirs).order_by("pk").values())
            outcome = self.repair(rule_id, project=mine.project_id)
            assert (outcome.status, outcome.fixed) == ("repaired", len(first | second))
            assert self.violators(rule_id, project=mine.project_id) == set()
            assert list(entry.model.objects.filter(pk__in=theirs).order_by("pk").values()) == before
            assert self.violators(rule_id, project=other.project_id) == planted[other.project_id]
            assert self.violators(rule_id, project=NO_PROJECT) == planted[NO_PROJECT]

    def assert_check_writes_nothing(self, rule_id, *plants):
        """Checking the defects every ``plant(deployment)`` leaves in one deployment reports them all (the rows
        the plants return; at least one when they return none) and changes no row of any table."""
        from antenna_invariants.rules import RULES
        from fixtures import factories as f

        station = f.DeploymentFactory()
        planted = set().union(*(_ids(plant(station)) for plant in plants))
        before = self.snapshot()
        outcome = self.check(rule_id, project=station.project_id)
        assert outcome.violations == len(planted) if planted else outcome.violations > 0
        assert outcome.status == ("warned" if RULES[rule_id].severity == "warn" else "failed")
        assert self.snapshot() == before

    @staticmethod
    def snapshot() -> dict[str, list[str]]:
        """Every mirrored table's full content, row by row (to prove check mode wrote nothing, or that an undo
        restored exactly what was there)."""
        from django.db import connection

        from antenna_invariants.schema import mirror_models

        dump = {}
        with connection.cursor() as cursor:
            for model in mirror_models():
                table = model._meta.db_table
                cursor.execute(f'SELECT to_jsonb(t)::text FROM "{table}" t ORDER BY t.id')
                dump[table] = [row for (row,) in cursor.fetchall()]
        return dump


def _ids(rows) -> set[int]:
    if rows is None:
        return set()
    return {row.pk for row in (rows if isinstance(rows, (list, tuple)) else [rows])}


@pytest.fixture
def invariants(db, tmp_path):
    return Invariants(tmp_path / "journals")


@pytest.fixture
def run(tmp_path):
    """Run ``pytest invariants`` (or another module) in a subprocess against the self-test database, which the
    calling test must have committed (``django_db(transaction=True)``); returns (exit code, output).
    ``run.reports`` is the reports directory, ``run.results()`` the JSON records by (rule, project)."""
    from django.db import connection

    def invoke(*args, module=("-m", "pytest", "invariants", "-p", "no:cacheprovider"), env=None):
        environment = {**os.environ, "DATABASE_URL": url_for(connection.settings_dict), **(env or {})}
        command = [sys.executable, *module, *args]
        if module[1] == "pytest" and "--reports" not in args:
            command += ["--reports", str(tmp_path)]
        done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
        return done.returncode, done.stdout + done.stderr

    def results():
        records = json.loads((tmp_path / "invariants.json").read_text())["results"]
        return {(r["rule"], r["project"]): r for r in records}

    invoke.reports, invoke.results = tmp_path, results
    return invoke
