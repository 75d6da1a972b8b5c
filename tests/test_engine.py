"""The engine's parts on their own: ids, thresholds, job footprints, read-only transactions, journals."""

import psycopg
import pytest
from django.db import connection

from antenna_invariants.check import read_only as read_only_transaction
from antenna_invariants.connection import read_only_settings, url_for
from antenna_invariants.errors import ConfigError
from antenna_invariants.rules import RULES, Rule
from antenna_invariants.scope import parse_ids
from fixtures import factories as f
from fixtures.scenarios import detections, occurrences


def test_parse_ids_accepts_repeats_and_commas_and_rejects_the_rest():
    assert parse_ids(["5", "7,9", "5"], "--project") == (5, 7, 9)
    assert parse_ids(None, "--project") is None
    with pytest.raises(ConfigError, match="--project: 'abc' is not an id"):
        parse_ids(["5,abc"], "--project")


@pytest.mark.parametrize(
    ("error_if", "violations", "checked", "tolerated"),
    [(None, 0, 10, True), (None, 1, 10, False), (">2", 2, 10, True), (">2", 3, 10, False),
     (">10%", 1, 10, True), (">10%", 2, 10, False), (">0.1%", 1, 0, False), (">0.1%", 0, 0, True)],
)
def test_thresholds_tolerate_a_count_or_a_share_of_the_denominator(error_if, violations, checked, tolerated):
    entry = Rule("X1", lambda rows: rows, "occurrences", "test", error_if=error_if)
    assert (entry.judge(violations, checked) != "failed") is tolerated
    entry.warn_if = error_if  # within both thresholds: passed (tolerated); beyond warn_if only: warned
    assert entry.judge(violations, checked) == ("passed" if tolerated else "failed")


@pytest.mark.parametrize(
    ("severity", "warn_if", "error_if", "violations", "status"),
    [("error", None, ">5", 3, "warned"), ("error", ">3", ">5", 3, "passed"), ("error", ">3", ">5", 6, "failed"),
     ("warn", None, None, 1, "warned"), ("warn", ">1", None, 1, "passed"), ("warn", None, None, 0, "passed")],
)
def test_warn_if_and_error_if_judge_in_dbts_order(severity, warn_if, error_if, violations, status):
    entry = Rule("X1", lambda rows: rows, "occurrences", "test", severity=severity, error_if=error_if, warn_if=warn_if)
    assert entry.judge(violations, 100) == status


COMMITTED = pytest.mark.django_db(transaction=True, available_apps=["antenna_invariants.mirror"])


@COMMITTED
def test_a_write_in_a_read_only_session_fails():
    with psycopg.connect(url_for(read_only_settings(dict(connection.settings_dict))), autocommit=True) as session:
        assert session.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            session.execute("UPDATE main_occurrence SET determination_score = 0.5")


@COMMITTED
def test_a_write_inside_the_checks_transaction_fails():
    occurrences.partial_save(f.DeploymentFactory())
    with (
        pytest.raises(Exception, match="read-only transaction"),
        read_only_transaction(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE main_occurrence SET determination_score = 0.5")


def test_job_scope_is_the_jobs_project_captures_and_algorithms(invariants):
    station = f.DeploymentFactory()
    inside = occurrences.partial_save(station)
    outside = occurrences.partial_save(station)  # same project, a capture the job never saw
    capture = inside.detections.get().source_image
    algorithm = inside.detections.get().classifications.get().algorithm
    collection = f.CollectionFactory(project=station.project, images=[capture])
    job = f.JobFactory(project=station.project, source_image_collection=collection, pipeline__algorithms=[algorithm])
    other_algorithm_job = f.JobFactory(project=station.project, source_image_collection=collection)

    assert invariants.violators("D1", project=station.project) == {inside.pk, outside.pk}
    assert invariants.violators("D1", project=station.project, job=job) == {inside.pk}
    assert invariants.violators("D1", project=station.project, job=other_algorithm_job) == set()


def test_job_scope_without_pipeline_or_inputs_falls_back_to_what_is_known(invariants):
    station = f.DeploymentFactory()
    orphan = detections.orphaned_detection(station)
    project = station.project
    by_deployment = f.JobFactory(project=project, job_type_key="regroup_events", deployment=station, pipeline=None)
    elsewhere = f.JobFactory(project=project, deployment=f.DeploymentFactory(project=project), pipeline=None)

    assert invariants.violators("N6", project=station.project, job=by_deployment) == {orphan.pk}
    assert invariants.violators("N6", project=station.project, job=elsewhere) == set()


def test_unknown_job_is_a_one_line_config_error(invariants):
    with pytest.raises(ConfigError, match="--job 999999: no such job"):
        invariants.scope(job=999999)


def test_a_failing_batch_is_split_and_only_the_bad_rows_count_as_unfixable(invariants, monkeypatch):
    station = f.DeploymentFactory()
    rows = [occurrences.partial_save(station) for _ in range(5)]
    poisoned = rows[2].pk
    entry = RULES["D1"]
    original = entry.repair_func

    def fails_on_one_row(violators):
        if violators.filter(pk=poisoned).exists():
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1/0")
        return original(violators)

    monkeypatch.setattr(entry, "repair_func", fails_on_one_row)
    outcome = invariants.repair("D1", project=station.project)

    assert (outcome.fixed, outcome.unfixable, outcome.status) == (4, 1, "failed")
    assert invariants.violators("D1", project=station.project) == {poisoned}


def test_sessions_use_antennas_time_zone(db):
    with connection.cursor() as cursor:
        cursor.execute("SHOW TimeZone")
        assert cursor.fetchone()[0] == "America/New_York"


def _every_scope(entry):
    from antenna_invariants.mirror.models import Project
    from antenna_invariants.scope import NO_PROJECT, Scope

    projects = [*Project.objects.order_by("pk").values_list("pk", flat=True), NO_PROJECT]
    return [Scope(project=p) for p in projects]


def test_a_grouped_check_reports_each_project_exactly_as_its_own_check(db):
    """Every project-scoped rule on the demo (defects in two projects and without one): the grouped
    statement of a full run, and of a run scoped to one project, gives each case the count, denominator,
    sample, status and SQL of the plain per-scope check."""
    from antenna_invariants.check import check, check_grouped, compiled_sql
    from antenna_invariants.layout import load_rules
    from fixtures.demo import build

    load_rules()
    build()
    compared = failing = 0
    for entry in RULES.values():
        if entry.is_global:
            continue
        scopes = _every_scope(entry)
        grouped = check_grouped(entry, scopes, sample_size=3)
        for scope in scopes:
            alone, together = check(entry, scope, sample_size=3), grouped[scope.label]
            single = check_grouped(entry, [scope], sample_size=3)[scope.label]
            fields = ("violations", "checked", "sample", "status", "sql", "message")
            expected = [getattr(alone, k) for k in fields]
            in_group, in_one = [getattr(together, k) for k in fields], [getattr(single, k) for k in fields]
            assert in_group == expected == in_one, (entry.id, scope)
            # the SQL is compiled once per rule and its project filled in: the text the case's own compiles to
            assert together.sql == (compiled_sql(entry.violations(scope)) if together.violations else ""), scope
            compared += 1
            failing += alone.violations > 0
    assert compared > 100
    assert failing > 40


def test_grouped_checks_are_taken_once_per_rule_and_fall_back_per_project_on_a_timeout(db, monkeypatch):
    from django.db import connection

    from antenna_invariants import check, runchecks
    from antenna_invariants.layout import load_rules

    load_rules()
    f.DeploymentFactory.create_batch(2)
    entry = RULES["D1"]
    scopes = _every_scope(entry)
    calls = []
    real = check.check_grouped
    monkeypatch.setattr(check, "check_grouped", lambda *a, **k: calls.append(1) or real(*a, **k))
    checks = runchecks.Checks()
    assert [checks.take(entry, s, scopes).scope for s in scopes] == [s.label for s in scopes]
    assert len(calls) == 1
    assert checks.pending == {"D1": {}}

    def slow(entry, scopes, *args, **kwargs):  # PostgreSQL cancels the statement for every project, not one
        if len(scopes) == 1:
            return real(entry, scopes, *args, **kwargs)
        with connection.cursor() as cursor:
            cursor.execute("SAVEPOINT slow; SET LOCAL statement_timeout = '50ms'")
            try:
                cursor.execute("SELECT pg_sleep(1)")
            finally:
                cursor.execute("ROLLBACK TO SAVEPOINT slow")

    monkeypatch.setattr(check, "check_grouped", slow)
    checks = runchecks.Checks()
    outcomes = [checks.take(entry, s, scopes) for s in scopes]
    assert checks.ungrouped == {"D1"}
    assert [o.status for o in outcomes] == ["passed"] * len(scopes)


# --- the rule registry and the run's settings --------------------------------------------------------------


def test_a_rule_declared_wrongly_fails_at_its_decorator_naming_the_rule_and_the_fix():
    from antenna_invariants.errors import RuleDefinitionError
    from antenna_invariants.rules import rule

    def two_tables(occurrences, detections):
        return occurrences

    def misspelt(occurences):
        return occurences

    def keyword_only(*, occurrences):
        return occurrences

    def undeclared_setting(occurrences, *, max_age):
        return occurrences

    def fine(occurrences):
        return occurrences

    cases = [
        ({}, two_tables, r"@rule\('X9'\) on .*two_tables: a rule takes exactly one parameter"),
        ({}, keyword_only, "a rule takes exactly one parameter"),
        ({}, undeclared_setting, r"keyword-only parameters \['max_age'\] are not its settings \[\]"),
        ({"settings": {"max_age": 1}}, fine, r"keyword-only parameters \[\] are not its settings \['max_age'\]"),
        ({}, misspelt, "no table 'occurences'; the parameter names one of: occurrences, "),
        ({"severity": "fatal"}, fine, "severity 'fatal' is not one of: error, warn"),
        ({"risk": "X"}, fine, "risk 'X' is not one of: L, M, H, -"),
        ({"error_if": "10"}, fine, "error_if '10' is not a threshold like >10 or >0.1%"),
        ({"warn_if": ">1.5"}, fine, r"warn_if '>1.5' is not a threshold"),
    ]
    for options, func, message in cases:
        with pytest.raises(RuleDefinitionError, match=message):
            rule("X9", **options)(func)
    assert "X9" not in RULES


def test_a_rule_id_declared_twice_fails_at_the_second_declaration():
    from antenna_invariants.errors import RuleDefinitionError
    from antenna_invariants.layout import load_rules
    from antenna_invariants.rules import rule

    load_rules()
    declared = RULES["D1"]

    def test_another_d1(occurrences):
        return occurrences

    with pytest.raises(RuleDefinitionError, match="rule id D1 is declared twice: .*test_another_d1"):
        rule("D1")(test_another_d1)
    assert RULES["D1"] is declared


def test_the_ini_severities_and_thresholds_make_the_runs_copies_and_leave_the_registry_as_declared():
    from antenna_invariants.layout import load_rules
    from antenna_invariants.options import RuleSettings
    from antenna_invariants.rules import Severity

    load_rules()
    declared = (RULES["D1"].severity, RULES["D1"].error_if, RULES["D1"].warn_if)
    settings = RuleSettings(severity={"D1": Severity.WARN}, error_if={"D1": ">10"}, warn_if={"D1": ">2"})
    run = settings.configured(RULES)
    assert (run["D1"].severity, run["D1"].error_if, run["D1"].warn_if) == (Severity.WARN, ">10", ">2")
    assert (RULES["D1"].severity, RULES["D1"].error_if, RULES["D1"].warn_if) == declared
    assert run["F1"] is RULES["F1"]  # a rule the ini does not name is the declared one
    assert list(run) == list(RULES)


def test_the_journaled_writes_refuse_outside_a_batch_of_the_repair_engine(db):
    from antenna_invariants.determination import rewrite_expected
    from antenna_invariants.journal import delete_journaled, purge_journaled
    from antenna_invariants.mirror.models import JobLog, Occurrence

    station = f.DeploymentFactory()
    occurrence = occurrences.partial_save(station)
    with pytest.raises(RuntimeError, match="a deleting repair needs an active journal"):
        delete_journaled(Occurrence.objects.filter(pk=occurrence.pk))
    with pytest.raises(RuntimeError, match="a purging repair needs an active journal"):
        purge_journaled(JobLog.objects.all())
    with pytest.raises(RuntimeError, match="rewriting determinations from a repair needs an active journal"):
        rewrite_expected([occurrence.pk])
    assert Occurrence.objects.filter(pk=occurrence.pk).exists()
