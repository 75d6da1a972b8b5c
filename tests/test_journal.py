"""The journal and undo: every repairing rule's changes are journaled line by line and undo to the byte."""


import errno
import json
import os
import re

import pytest
from django.db import connection, transaction

from antenna_invariants.check import check
from antenna_invariants.journal import Journal, JournalError, database_identity, read, seal
from antenna_invariants.layout import load_rules
from antenna_invariants.mirror.models import Event, Occurrence, Project
from antenna_invariants.repair import repair
from antenna_invariants.rules import RULES
from antenna_invariants.scope import NO_PROJECT, Scope
from antenna_invariants.undo import undo, writable_tables
from fixtures import demo
from fixtures import factories as f
from fixtures.scenarios import occurrences as scenarios

load_rules()
PURGING = {"JL1"}  # deletes for good, journaled as a count and an id range: not restorable (test_jobs_rules.py)
REPAIRING = sorted(entry.id for entry in RULES.values() if entry.repair_func is not None and entry.id not in PURGING)


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
    return [meta for _, meta, _ in read(journal.path).lines]


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
    assert not result.refused
    assert result.not_applied == 0
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

    assert result.refused == [("main_occurrence", second.pk, "changed since the repair")]
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
    assert result.journal is None
    assert not (tmp_path / "undo").exists()


def test_lines_of_a_change_that_never_committed_are_recognised_and_skipped(invariants, tmp_path):
    station = f.DeploymentFactory()
    scenarios.partial_save(station)
    before = invariants.snapshot()
    with transaction.atomic():
        invariants.repair("D1", project=station.project_id)  # journaled, then the transaction is lost
        transaction.set_rollback(True)
    assert invariants.snapshot() == before
    assert lines(invariants.journal)

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

    with pytest.raises(JournalError, match=r"crafted.jsonl:3: not a journal line"):
        undo(path)
    assert invariants.snapshot() == repaired


# --- a journal is input: torn, edited, forged, foreign, old -----------------------------------------------


def repaired_in_batches(invariants, tmp_path, violators: int = 2, batch_size: int = 1):
    """D1 repaired in one project with ``violators`` partial saves, ``batch_size`` rows a batch."""
    station = f.DeploymentFactory()
    planted = [scenarios.partial_save(station) for _ in range(violators)]
    before = invariants.snapshot()
    scope = Scope(project=station.project_id)
    journal = Journal(tmp_path / "journals")
    repair(RULES["D1"], scope, check(RULES["D1"], scope), journal, batch_size=batch_size)
    return planted, before, journal


def rewrite(path, edit) -> None:
    """Forge a journal the way someone with this code could: edit the parsed lines, seal them again."""
    objects = [json.loads(line) for line in path.read_text().splitlines()]
    for line in objects:
        line.pop("sum")
    path.write_text(seal([json.dumps(line) for line in edit(objects)])[0])


def test_a_torn_last_line_is_a_batch_that_never_committed_and_the_rest_is_restored(invariants, tmp_path):
    (first, second, third), _, journal = repaired_in_batches(invariants, tmp_path, violators=3, batch_size=2)
    data = journal.path.read_bytes()  # header, batch 1 (lines 2-3), batch 2 (line 4)
    journal.path.write_bytes(data[: len(data) - 100])

    result = undo(journal.path)

    assert result.torn == (4, 4)
    assert result.restored == {"update main_occurrence": 2}
    assert {Occurrence.objects.get(pk=o.pk).determination_id for o in (first, second)} == {None}
    assert Occurrence.objects.get(pk=third.pk).determination_id is not None  # its line never made it: left


def test_a_batch_cut_at_a_line_end_never_committed_either(invariants, tmp_path):
    (first, second), _, journal = repaired_in_batches(invariants, tmp_path, violators=2, batch_size=2)
    lines = journal.path.read_bytes().splitlines(keepends=True)  # header, batch 1 (lines 2-3)
    journal.path.write_bytes(b"".join(lines[:2]))

    result = undo(journal.path)

    assert (result.torn, result.restored, result.refused) == ((2, 2), {}, [])
    assert None not in {Occurrence.objects.get(pk=o.pk).determination_id for o in (first, second)}


def test_an_empty_or_header_only_journal_has_nothing_to_undo(invariants, tmp_path):
    _, _, journal = repaired_in_batches(invariants, tmp_path, violators=1)
    header = journal.path.read_bytes().splitlines(keepends=True)[0]
    for text, torn in ((b"", (1, 1)), (header[:20], (1, 1)), (header, None)):
        journal.path.write_bytes(text)
        result = undo(journal.path, dry_run=True)
        assert (result.restored, result.torn) == ({}, torn)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text.replace('"determination_id": null', '"determination_id": 1'), "does not match its checksum"),
        (lambda text: "\n".join(text.splitlines()[:1] + text.splitlines()[2:]) + "\n", "does not match its checksum"),
        (lambda text: text.replace('"lines": 1', '"lines": 2', 1), "does not match its checksum"),
        (lambda text: "\n".join(text.splitlines()[1:]) + "\n", "not a journal (no version 2 header)"),
    ],
    ids=["value edited", "line dropped", "batch size edited", "header dropped"],
)
def test_an_edited_journal_is_refused_before_any_write(edit, message, invariants, tmp_path):
    _, _, journal = repaired_in_batches(invariants, tmp_path, violators=2)
    repaired = invariants.snapshot()
    journal.path.write_text(edit(journal.path.read_text()))

    with pytest.raises(JournalError, match=re.escape(message)):
        undo(journal.path)
    assert invariants.snapshot() == repaired


def test_a_forged_line_for_a_table_no_repair_writes_is_refused(invariants, tmp_path):
    _, _, journal = repaired_in_batches(invariants, tmp_path, violators=1)
    repaired = invariants.snapshot()

    def add_a_superuser(lines):
        forged = {**lines[1], "op": "delete", "table": "users_user", "pk": 999, "new": None,
                  "old": {"id": 999, "email": "evil@example.org", "is_superuser": True}}
        return [*lines, forged]

    rewrite(journal.path, add_a_superuser)

    with pytest.raises(JournalError, match=r":3: users_user is not a table the suite's repairs write"):
        undo(journal.path)
    assert invariants.snapshot() == repaired
    assert "main_occurrence" in writable_tables()
    assert "main_identification" in writable_tables()
    assert not writable_tables() & {"users_user", "main_project", "ml_algorithm"}


@pytest.mark.parametrize("image", ["old", "new"])
def test_a_line_whose_row_images_are_another_row_is_refused(image, invariants, tmp_path):
    (planted,), _, journal = repaired_in_batches(invariants, tmp_path, violators=1)
    other = scenarios.partial_save(f.DeploymentFactory())
    repaired = invariants.snapshot()

    def point_at_another_row(lines):
        lines[1][image] = {**lines[1][image], "id": other.pk}
        return lines

    rewrite(journal.path, point_at_another_row)

    with pytest.raises(JournalError, match=rf":2: its {image} row is not row {planted.pk}, the line's pk"):
        undo(journal.path)
    assert invariants.snapshot() == repaired


def test_a_journal_of_another_database_is_refused(invariants, tmp_path):
    _, _, journal = repaired_in_batches(invariants, tmp_path, violators=1)
    repaired = invariants.snapshot()
    here = database_identity()
    assert here["system_identifier"]
    assert here["name"] == connection.settings_dict["NAME"]

    def elsewhere(lines):
        lines[0]["database"] = {**here, "system_identifier": "1234567890123456789"}
        return lines

    rewrite(journal.path, elsewhere)

    with pytest.raises(JournalError, match="the journal belongs to another database"):
        undo(journal.path)
    assert invariants.snapshot() == repaired


@pytest.mark.parametrize(("name", "accepted"), [("same", True), ("another", False)])
def test_without_a_system_identifier_the_name_and_oid_decide(name, accepted, invariants, tmp_path):
    (planted,), _, journal = repaired_in_batches(invariants, tmp_path, violators=1)
    here = database_identity()

    def unreadable_system_identifier(lines):  # a role denied pg_control_system() wrote it
        lines[0]["database"] = {**here, "system_identifier": None, "name": here["name"] if name == "same" else name}
        return lines

    rewrite(journal.path, unreadable_system_identifier)

    if accepted:
        assert undo(journal.path).restored == {"update main_occurrence": 1}
    else:
        with pytest.raises(JournalError, match="the journal belongs to another database"):
            undo(journal.path)


def test_a_journal_from_before_checksums_is_undone_only_when_asked(invariants, tmp_path):
    (planted,), _, journal = repaired_in_batches(invariants, tmp_path, violators=1)
    version_1 = tmp_path / "old.jsonl"
    lines = [json.loads(line) for line in journal.path.read_text().splitlines()[1:]]
    version_1.write_text("".join(json.dumps({k: v for k, v in line.items() if k not in ("batch", "lines", "sum")})
                                 + "\n" for line in lines))

    with pytest.raises(JournalError, match="a journal from before version 2 .* add --version-1"):
        undo(version_1)
    result = undo(version_1, version_1=True)

    assert result.restored == {"update main_occurrence": 1}
    assert Occurrence.objects.get(pk=planted.pk).determination_id is None


def test_a_purge_line_is_reported_as_not_restorable_and_skipped(invariants, tmp_path):
    (planted,), before, journal = repaired_in_batches(invariants, tmp_path, violators=1)
    journal.purge("JL1", "global", "jobs_joblog", 1200, 5, 1204)

    result = undo(journal.path)

    assert result.purged == [{**read(journal.path).lines[-1][1]}]
    assert (result.purged[0]["count"], result.purged[0]["first_id"], result.purged[0]["last_id"]) == (1200, 5, 1204)
    assert result.restored == {"update main_occurrence": 1}
    assert not result.refused
    assert journal.tally("JL1", "global") == {"purge jobs_joblog": 1200}


def test_a_restore_the_database_refuses_is_listed_and_the_rest_restored(invariants, tmp_path):
    station = f.DeploymentFactory()
    orphaned, kept = scenarios.phantom_occurrence(station), scenarios.phantom_occurrence(station)
    invariants.repair("F1", project=station.project_id)
    Event.objects.filter(pk=orphaned.event_id).delete()  # Antenna deleted the parent event since (Django's cascade)

    result = undo(invariants.journal.path)

    refused = {(table, pk): why for table, pk, why in result.refused}
    assert "foreign key" in refused["main_occurrence", orphaned.pk]
    assert Occurrence.objects.filter(pk=kept.pk).exists()
    assert not Occurrence.objects.filter(pk=orphaned.pk).exists()
    journaled = {(meta["table"], meta["pk"]) for _, meta, _ in read(result.journal).lines}
    assert ("main_occurrence", kept.pk) in journaled
    assert ("main_occurrence", orphaned.pk) not in journaled
    assert sum(result.restored.values()) == len(journaled)


def test_a_batch_the_disk_had_no_room_for_is_cut_off_before_the_next_one(invariants, tmp_path, monkeypatch):
    mine, other = f.DeploymentFactory(), f.DeploymentFactory()
    planted = [scenarios.partial_save(mine), scenarios.partial_save(other)]
    before = invariants.snapshot()
    journal = Journal(tmp_path)

    def repair_d1(station):
        scope = Scope(project=station.project_id)
        return repair(RULES["D1"], scope, check(RULES["D1"], scope), journal)

    def disk_full(descriptor):  # the write got part of the batch out, then the disk was full
        os.ftruncate(descriptor, os.fstat(descriptor).st_size - 40)
        raise OSError(errno.ENOSPC, "No space left on device")

    repair_d1(mine)
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", disk_full)
        with pytest.raises(OSError, match="No space left on device"):
            repair_d1(other)  # rolled back: never committed
    assert not journal.path.read_bytes().endswith(b"\n")  # a torn line, for now
    repair_d1(other)  # the next batch cuts it off first

    reading = read(journal.path)
    assert reading.torn is None
    assert [meta["pk"] for _, meta, _ in reading.lines] == [o.pk for o in planted]
    assert undo(journal.path).restored == {"update main_occurrence": 2}
    assert invariants.snapshot() == before
