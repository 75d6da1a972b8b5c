"""Repairs against a database Antenna keeps writing to: crashes, concurrent writers, blast radius, timeouts.

Every test here commits its data (a repair is its own transaction; a subprocess must see the rows).
"""


import psycopg
import pytest
from django.db import connection

from antenna_invariants import repair
from antenna_invariants.connection import ROOT, url_for
from antenna_invariants.journal import Journal, read
from antenna_invariants.mirror.models import Occurrence, SourceImage
from antenna_invariants.undo import undo
from fixtures import factories as f
from fixtures.scenarios import counts
from fixtures.scenarios import occurrences as scenarios

pytestmark = pytest.mark.django_db(transaction=True, available_apps=["antenna_invariants.mirror"])


def antenna():
    """A second connection, as Antenna's own (autocommit: each statement lands at once)."""
    return psycopg.connect(url_for(connection.settings_dict), autocommit=True)


# --- concurrency -------------------------------------------------------------------------------------------


def test_rows_antenna_fixes_or_moves_after_the_check_are_left_as_antenna_wrote_them(invariants, monkeypatch):
    mine, theirs = f.DeploymentFactory(), f.DeploymentFactory()
    fixed_by_antenna, moved_by_antenna, ours = (scenarios.partial_save(mine) for _ in range(3))
    person_choice = f.TaxonFactory()
    real_batch = repair._repair_batch

    def antenna_writes_between_check_and_repair(*args):
        with antenna() as other:
            other.execute(
                "UPDATE main_occurrence SET determination_id = %s, determination_score = 1.0 WHERE id = %s",
                [person_choice.pk, fixed_by_antenna.pk],
            )
            other.execute(
                "UPDATE main_occurrence SET project_id = %s WHERE id = %s", [theirs.project_id, moved_by_antenna.pk]
            )
        return real_batch(*args)

    monkeypatch.setattr(repair, "_repair_batch", antenna_writes_between_check_and_repair)
    outcome = invariants.repair("D1", project=mine.project_id)

    assert (outcome.status, outcome.violations, outcome.fixed, outcome.changed_under_repair) == ("repaired", 3, 1, 2)
    assert Occurrence.objects.get(pk=fixed_by_antenna.pk).determination_id == person_choice.pk
    assert Occurrence.objects.get(pk=moved_by_antenna.pk).determination_id is None  # out of scope now: not ours
    assert Occurrence.objects.get(pk=ours.pk).determination_id is not None
    journaled = [meta["pk"] for _, meta, _ in read(invariants.journal.path).lines]
    assert journaled == [ours.pk]


def test_a_row_being_repaired_is_locked_until_the_repair_commits(invariants, monkeypatch):
    station = f.DeploymentFactory()
    occurrence = scenarios.partial_save(station)
    real_watch, attempts = Journal.watch, []

    def watch_then_antenna_tries_to_write(journal, model, ids):
        real_watch(journal, model, ids)
        with antenna() as other:
            other.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("UPDATE main_occurrence SET determination_score = 0.5 WHERE id = %s", [occurrence.pk])
        attempts.append(ids)

    monkeypatch.setattr(Journal, "watch", watch_then_antenna_tries_to_write)
    assert invariants.repair("D1", project=station.project_id).status == "repaired"

    assert attempts == [[occurrence.pk]]
    with antenna() as other:  # and free once it has
        touched = other.execute("UPDATE main_occurrence SET updated_at = now() WHERE id = %s", [occurrence.pk])
        assert touched.rowcount == 1


# --- crash safety ------------------------------------------------------------------------------------------

# (where the process is killed, which (rule, project index) cases have landed by then); batches of one row,
# two violators per rule and project, F1 before D1 (rules.RUN_ORDER: phantoms go before determinations):
# F1 in project A (journal appends 1-2), F1 in B (3-4), D1 in A, D1 in B.
CRASHES = [
    ("locked:1", set()),
    ("journaled:1", set()),
    ("journaled:3", {("F1", 0)}),
    ("committed:1", {("F1", 0)}),
    ("committed:3", {("F1", 0), ("F1", 1), ("D1", 0)}),
]


@pytest.mark.parametrize("tests_per", ["case", "rule"])
@pytest.mark.parametrize(("point", "landed"), CRASHES)
def test_a_repair_killed_anywhere_lands_whole_cases_and_its_journal_undoes_them(point, landed, tests_per, run,
                                                                                 invariants):
    stations = [f.DeploymentFactory(), f.DeploymentFactory()]
    planted = {}
    for index, station in enumerate(stations):
        planted["D1", index] = {scenarios.partial_save(station).pk for _ in range(2)}
        planted["F1", index] = {scenarios.phantom_occurrence(station).pk for _ in range(2)}
    before = invariants.snapshot()

    code, output = run(
        "--repair", "--all-projects", "-m", "D1 or F1", "-p", "plugins.crashpoint", "--tests-per", tests_per,
        env={"INVARIANTS_CRASH": point, "INVARIANTS_BATCH_SIZE": "1", "PYTHONPATH": str(ROOT / "tests")},
    )

    assert code == -9, output  # SIGKILL: no cleanup ran
    for (rule_id, index), ids in planted.items():
        left = invariants.violators(rule_id, project=stations[index].project_id)
        assert left == (set() if (rule_id, index) in landed else ids), (rule_id, index)
    journals = list(run.reports.glob("journal-*.jsonl"))
    if journals:
        undo(journals[0])
    assert invariants.snapshot() == before


@pytest.mark.parametrize("batch_size", ["1", "2"])
def test_a_repair_killed_while_writing_its_journal_is_undone_up_to_the_torn_batch(batch_size, run, invariants):
    stations = [f.DeploymentFactory(), f.DeploymentFactory()]
    planted = [{scenarios.partial_save(station).pk for _ in range(2)} for station in stations]
    before = invariants.snapshot()
    torn_batch = "3" if batch_size == "1" else "2"  # the first batch of the second project

    code, output = run(
        "--repair", "--all-projects", "-m", "D1", "-p", "plugins.crashpoint",
        env={"INVARIANTS_CRASH": f"torn:{torn_batch}", "INVARIANTS_BATCH_SIZE": batch_size,
             "PYTHONPATH": str(ROOT / "tests")},
    )

    assert code == -9, output
    assert invariants.violators("D1", project=stations[0].project_id) == set()  # committed
    assert invariants.violators("D1", project=stations[1].project_id) == planted[1]  # died with its batch
    (journal,) = run.reports.glob("journal-*.jsonl")
    assert not journal.read_bytes().endswith(b"\n")  # cut inside the batch's last line
    code, output = run(str(journal), module=("-m", "antenna_invariants", "undo"))
    assert code == 0, output
    assert "restored: 2 update main_occurrence;" in output
    assert f"skipped lines 4-{3 + int(batch_size)}: a batch cut off while it was written" in output
    assert invariants.snapshot() == before


def test_undo_exits_1_listing_a_row_the_database_refuses_and_restores_the_rest(run, invariants):
    station = f.DeploymentFactory()
    orphaned, kept = scenarios.phantom_occurrence(station), scenarios.phantom_occurrence(station)
    code, output = run("--repair", f"--project={station.project_id}", "-m", "F1")
    assert code == 0, output
    (journal,) = run.reports.glob("journal-*.jsonl")
    with antenna() as other:  # Antenna deletes the orphan's event (its captures keep no link to it)
        other.execute("UPDATE main_sourceimage SET event_id = NULL WHERE event_id = %s", [orphaned.event_id])
        other.execute("DELETE FROM main_event WHERE id = %s", [orphaned.event_id])

    code, output = run(str(journal), module=("-m", "antenna_invariants", "undo"))

    assert code == 1, output
    assert f"refused: main_occurrence id {orphaned.pk}: refused by the database: " in output
    assert Occurrence.objects.filter(pk=kept.pk).exists()
    assert not Occurrence.objects.filter(pk=orphaned.pk).exists()
    (undone,) = run.reports.glob("journal-undo-*.jsonl")
    assert ("main_occurrence", orphaned.pk) not in {(m["table"], m["pk"]) for _, m, _ in read(undone).lines}


# --- blast radius ------------------------------------------------------------------------------------------


def test_repair_limit_caps_the_rows_changed_and_reports_the_rest(run, invariants):
    station = f.DeploymentFactory()
    planted = {scenarios.partial_save(station).pk for _ in range(3)}

    code, output = run("--repair", f"--project={station.project_id}", "-m", "D1", "--repair-limit", "2")

    assert code == 1, output
    assert (
        "repair: 2 fixed, 0 unfixable, 0 changed under the repair, 1 remaining (1 left alone by --repair-limit)"
        in output
    )
    assert invariants.violators("D1", project=station.project_id) == {max(planted)}  # the lowest ids go first


def test_a_repair_rewriting_much_of_a_table_needs_force(run, invariants):
    station = f.DeploymentFactory()
    f.SourceImageFactory.create_batch(120, deployment=station, project=station.project)
    counts.refresh_all()
    SourceImage.objects.update(detections_count=7)  # every capture's cached count is wrong
    before = invariants.snapshot()

    code, output = run("--repair", f"--project={station.project_id}", "-m", "K1")

    assert code == 1, output
    assert "repair refused: the repair would change 120 of the 120 rows of main_sourceimage (more than 10%)" in output
    assert invariants.snapshot() == before
    code, output = run("--repair", f"--project={station.project_id}", "-m", "K1", "--force")
    assert code == 0, output
    assert invariants.violators("K1", project=station.project_id) == set()


# --- timeouts and follow-ups -------------------------------------------------------------------------------


def test_a_rule_that_times_out_errors_alone_and_the_run_goes_on(run):
    station = f.DeploymentFactory()
    f.OccurrenceFactory(event__deployment=station)
    with antenna() as other, other.transaction():
        other.execute("LOCK TABLE main_taxon IN ACCESS EXCLUSIVE MODE")  # a migration holds the taxa
        code, output = run("-m", "K4 or J2", "--statement-timeout", "1s")

    assert code == 1, output
    assert "K4 could not run: timed out: a query ran longer than --statement-timeout 1s" in output
    results = run.results()
    assert results["K4", "global"]["status"] == "error"
    assert {r["status"] for key, r in results.items() if key[0] == "J2"} == {"passed"}


def test_after_a_repair_the_antenna_follow_ups_are_printed(run):
    station = f.DeploymentFactory()
    scenarios.partial_save(station)

    code, output = run("--repair", f"--project={station.project_id}", "-m", "D1")

    assert code == 0, output
    assert "python manage.py invalidate_cachalot" in output
    for rule_id in ("K1", "K2", "K3"):  # a new determination changes what passes the default filters
        assert f"pytest invariants -m {rule_id} --repair --project {station.project_id}" in output
    assert "python -m antenna_invariants undo " in output


def test_one_repair_pass_recounts_what_its_determination_repairs_changed(run, invariants):
    """D1's repair gives a partial save its 0.8 score: it now passes the 0.5 threshold, so the counts of its
    capture, event and deployment change.  The run takes the counts after the determinations, so one
    --repair leaves nothing for a second, and the follow-ups no longer ask for a recount."""
    station = f.DeploymentFactory()
    partial = scenarios.partial_save(station)
    counts.refresh_all()  # every cached count true before the repair: 0 detections counted

    code, output = run("--repair", f"--project={station.project_id}", "-m", "D1 or K1 or K2 or K3")

    assert code == 0, output
    results = run.results()
    assert results["D1", f"project{station.project_id}"]["status"] == "repaired"
    assert {results[k, f"project{station.project_id}"]["status"] for k in ("K1", "K2", "K3")} == {"repaired"}
    assert "pytest invariants -m K" not in output  # nothing left for a person to recount
    assert "python manage.py invalidate_cachalot" in output
    for rule_id in ("D1", "K1", "K2", "K3"):
        assert invariants.violators(rule_id, project=station.project_id) == set(), rule_id
    assert SourceImage.objects.get(detections__occurrence=partial).detections_count == 1
