"""The journal and undo: every repairing rule's changes are journaled line by line and undo to the byte."""

import json

import pytest
from django.db import connection, transaction

from antenna_invariants.journal import Journal, undo
from antenna_invariants.layout import load_rules
from antenna_invariants.mirror.models import Occurrence, Project
from antenna_invariants.rules import RULES, check, repair
from antenna_invariants.scope import NO_PROJECT, Scope
from fixtures import demo
from fixtures import factories as f
from fixtures.scenarios import occurrences as scenarios

load_rules()
REPAIRING = sorted(entry.id for entry in RULES.values() if entry.repair_func is not None)


def repair_everywhere(rule_id: str, journal: Journal) -> int:
    """Repair one rule in every project case of the database (as `--all-projects --repair` would)."""
    entry = RULES[rule_id]
    projects = [None] if entry.is_global else [*Project.objects.values_list("pk", flat=True), NO_PROJECT]
    fixed = 0
    for project in projects:
        scope = Scope(project=project)
        outcome = check(entry, scope)
        if outcome.status == "failed":
            fixed += repair(entry, scope, outcome, journal).fixed
    return fixed


def lines(journal: Journal) -> list[dict]:
    return [json.loads(line) for line in journal.path.read_text().splitlines()]


@pytest.mark.parametrize("rule_id", REPAIRING)
def test_repair_then_undo_gives_back_the_database_row_for_row(rule_id, invariants, tmp_path):
    demo.build()  # a defect for every rule
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # planner statistics for this transaction's rows, as a real database has
    before = invariants.snapshot()
    journal = Journal(tmp_path)

    assert repair_everywhere(rule_id, journal) > 0
    repaired = invariants.snapshot()
    assert repaired != before
    result = undo(journal.path)

    assert invariants.snapshot() == before
    assert not result.refused and result.not_applied == 0
    assert sum(result.restored.values()) == len(lines(journal))
    undo(result.journal)  # the undo is journaled: undoing it repeats the repair
    assert invariants.snapshot() == repaired


def test_a_line_names_the_run_rule_row_and_both_images(invariants, tmp_path):
    station = f.DeploymentFactory()
    partial = scenarios.partial_save(station)
    journal = Journal(tmp_path, run="run-1")

    repair(RULES["D1"], Scope(project=station.project_id), invariants.check("D1", project=station.project_id), journal)

    (line,) = lines(journal)
    assert journal.path.name == "journal-run-1.jsonl"
    assert {k: line[k] for k in ("run", "rule", "scope", "op", "table", "pk")} == {
        "run": "run-1", "rule": "D1", "scope": f"project{station.project_id}", "op": "update",
        "table": "main_occurrence", "pk": partial.pk,
    }
    assert line["changed"] == ["determination_id", "determination_score", "updated_at"]
    assert line["old"]["determination_id"] is None
    assert line["new"]["determination_id"] == Occurrence.objects.get(pk=partial.pk).determination_id
    assert {k: v for k, v in line["old"].items() if k not in line["changed"]} == {
        k: v for k, v in line["new"].items() if k not in line["changed"]
    }


def test_undo_refuses_a_row_changed_since_the_repair_and_restores_the_rest(invariants, tmp_path):
    station = f.DeploymentFactory()
    first, second = scenarios.partial_save(station), scenarios.partial_save(station)
    invariants.repair("D1", project=station.project_id)
    person_choice = f.TaxonFactory()
    Occurrence.objects.filter(pk=second.pk).update(determination=person_choice)  # Antenna wrote since

    result = undo(invariants.journal.path)

    assert result.refused == [("main_occurrence", second.pk, "changed since")]
    assert Occurrence.objects.get(pk=first.pk).determination_id is None  # restored
    assert Occurrence.objects.get(pk=second.pk).determination_id == person_choice.pk  # left as Antenna wrote it
    assert result.restored == {"update main_occurrence": 1}


def test_undo_dry_run_writes_nothing_and_says_what_it_would_do(invariants, tmp_path):
    station = f.DeploymentFactory()
    scenarios.partial_save(station)
    invariants.repair("D1", project=station.project_id)
    repaired = invariants.snapshot()

    result = undo(invariants.journal.path, directory=tmp_path / "undo", dry_run=True)

    assert result.restored == {"update main_occurrence": 1}
    assert invariants.snapshot() == repaired
    assert result.journal is None and not (tmp_path / "undo").exists()


def test_lines_of_a_change_that_never_committed_are_recognised_and_skipped(invariants, tmp_path):
    station = f.DeploymentFactory()
    scenarios.partial_save(station)
    before = invariants.snapshot()
    with transaction.atomic():
        invariants.repair("D1", project=station.project_id)  # journaled, then the transaction is lost
        transaction.set_rollback(True)
    assert invariants.snapshot() == before and lines(invariants.journal)

    result = undo(invariants.journal.path)

    assert (result.restored, result.not_applied, result.refused) == ({}, 1, [])
    assert invariants.snapshot() == before


def test_a_failed_batch_leaves_no_line_behind(invariants, tmp_path, monkeypatch):
    station = f.DeploymentFactory()
    scenarios.partial_save(station)
    entry = RULES["D1"]

    def broken(violators):
        violators.update(determination_score=-1)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")

    monkeypatch.setattr(entry, "repair_func", broken)
    outcome = invariants.repair("D1", project=station.project_id)

    assert (outcome.fixed, outcome.unfixable) == (0, 1)
    assert invariants.journal.path_if_written() is None


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"op": "update", "table": "main_occurrence"}',
        '{"op": "drop", "table": "main_occurrence", "pk": 1}',
        '{"op": "delete", "table": "main_occurrence\\" CASCADE; --", "pk": 1, "old": {}}',
    ],
)
def test_a_damaged_or_crafted_journal_is_refused_before_any_write(text, invariants, tmp_path):
    station = f.DeploymentFactory()
    scenarios.partial_save(station)
    invariants.repair("D1", project=station.project_id)
    repaired = invariants.snapshot()
    path = tmp_path / "crafted.jsonl"
    path.write_text(invariants.journal.path.read_text() + text + "\n")

    with pytest.raises(ValueError, match=r"crafted.jsonl:2: not a journal line"):
        undo(path)
    assert invariants.snapshot() == repaired
