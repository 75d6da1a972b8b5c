"""Repairs racing a real concurrent writer, one per repair family: a second connection (Antenna) changes a row
the violation condition reads and holds its transaction open; the repair starts, waits for the writer's lock
(seen in pg_blocking_pids, never guessed with a sleep), and the writer commits while it waits.  The writer's
change always wins: the row stays as the writer left it and counts as changed under the repair.

Every test commits its data (the writer must see it); pytest-django flushes the tables afterwards.
"""

import threading
import time

import psycopg
import pytest
from django.db import connection

from antenna_invariants.connection import url_for
from antenna_invariants.locks import plan
from antenna_invariants.mirror import models as m
from fixtures import factories as f
from fixtures.scenarios import counts
from fixtures.scenarios import detections as detection_scenarios
from fixtures.scenarios import identifications as identification_scenarios
from fixtures.scenarios import occurrences as occurrence_scenarios

pytestmark = pytest.mark.django_db(transaction=True, available_apps=["antenna_invariants.mirror"])

WAIT = 30  # seconds the writer waits for the repair to block on it before it commits anyway


def race(invariants, rule_id, project, *statements, then=()):
    """Run ``statements`` (SQL, params) in a writer's open transaction, repair ``rule_id`` in ``project`` here,
    and commit the writer as soon as the repair is blocked on one of its locks (after running ``then``, the
    writer's next statements).  Returns the repair's outcome and whether the repair waited for the writer (a
    repair that does not wait decided on a stale read)."""
    url = url_for(connection.settings_dict)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (repairer,) = cursor.fetchone()
    writer, monitor = psycopg.connect(url), psycopg.connect(url, autocommit=True)
    for sql, params in statements:
        writer.execute(sql, params)  # the transaction stays open, its row locks held
    repaired, waited = threading.Event(), []

    def commit_once_the_repair_waits():
        deadline = time.monotonic() + WAIT
        while not repaired.is_set() and time.monotonic() < deadline:
            blocked = monitor.execute(
                "SELECT %s = ANY (pg_blocking_pids(%s)) FROM pg_stat_activity"
                " WHERE pid = %s AND wait_event_type = 'Lock'",
                [writer.info.backend_pid, repairer, repairer],
            ).fetchone()
            if blocked and blocked[0]:
                waited.append(True)
                for sql, params in then:
                    writer.execute(sql, params)
                break
            time.sleep(0.005)  # polls what PostgreSQL reports; the order of events never depends on it
        writer.commit()

    thread = threading.Thread(target=commit_once_the_repair_waits)
    thread.start()
    try:
        outcome = invariants.repair(rule_id, project=project)
    finally:
        repaired.set()
        thread.join()
        writer.close()
        monitor.close()
    return outcome, bool(waited)


def assert_changed_under_the_repair(outcome, waited):
    assert waited, "the repair did not wait for the writer's transaction: it decided on what it read before"
    assert (outcome.violations, outcome.fixed, outcome.changed_under_repair, outcome.remaining) == (1, 0, 1, 0)
    assert outcome.status == "repaired"  # nothing remains: the writer made the row legitimate


def test_f1_keeps_an_occurrence_whose_detection_became_real_during_the_repair(invariants):
    station = f.DeploymentFactory()
    phantom = occurrence_scenarios.phantom_occurrence(station)
    marker = m.Detection.objects.get(occurrence=phantom)

    outcome, waited = race(invariants, "F1", station.project_id,
                           ("UPDATE main_detection SET bbox = '[10, 10, 50, 50]' WHERE id = %s", [marker.pk]))

    assert_changed_under_the_repair(outcome, waited)
    assert m.Occurrence.objects.filter(pk=phantom.pk).exists()
    assert m.Detection.objects.filter(pk=marker.pk, occurrence=phantom, bbox__isnull=False).exists()


def test_n3_keeps_a_marker_whose_older_twin_became_real_during_the_repair(invariants):
    station = f.DeploymentFactory()
    (extra,) = detection_scenarios.repeated_null_markers(station)
    oldest = m.Detection.objects.exclude(pk=extra.pk).get(source_image=extra.source_image, bbox__isnull=True)

    outcome, waited = race(invariants, "N3", station.project_id,
                           ("UPDATE main_detection SET bbox = '[10, 10, 50, 50]' WHERE id = %s", [oldest.pk]))

    assert_changed_under_the_repair(outcome, waited)
    assert m.Detection.objects.filter(pk=extra.pk, bbox__isnull=True).exists()
    assert m.Detection.objects.filter(pk=oldest.pk, bbox__isnull=False).exists()


def test_d1_leaves_undetermined_an_occurrence_whose_evidence_was_withdrawn_during_the_repair(invariants):
    station = f.DeploymentFactory()
    occurrence = occurrence_scenarios.identified_but_undetermined(station)

    withdraw = ("UPDATE main_identification SET withdrawn = true WHERE occurrence_id = %s", [occurrence.pk])
    outcome, waited = race(invariants, "D1", station.project_id, withdraw)

    assert_changed_under_the_repair(outcome, waited)
    row = m.Occurrence.objects.get(pk=occurrence.pk)
    assert (row.determination_id, row.determination_score) == (None, None)
    assert m.Identification.objects.get(occurrence=occurrence).withdrawn


def test_k1_keeps_the_count_that_a_rescore_during_the_repair_made_true_again(invariants):
    project = counts.filtered_project(threshold=0.5)
    occurrence = counts.occurrence(f.DeploymentFactory(project=project), detections__score=0.8)
    capture = occurrence.detections.get().source_image
    counts.refresh_all()
    m.Occurrence.objects.filter(pk=occurrence.pk).update(determination_score=0.3)  # rescored, never recounted
    assert m.SourceImage.objects.get(pk=capture.pk).detections_count == 1

    outcome, waited = race(invariants, "K1", project.pk,
                           ("UPDATE main_occurrence SET determination_score = 0.8 WHERE id = %s", [occurrence.pk]))

    assert_changed_under_the_repair(outcome, waited)
    assert m.SourceImage.objects.get(pk=capture.pk).detections_count == 1
    assert m.Occurrence.objects.get(pk=occurrence.pk).determination_score == 0.8


def test_c5_keeps_the_event_that_a_capture_moved_back_into_during_the_repair(invariants):
    station = f.DeploymentFactory()
    occurrence = occurrence_scenarios.regrouped_without_realignment(station)
    capture = occurrence.detections.get().source_image

    move = ("UPDATE main_sourceimage SET event_id = %s WHERE id = %s", [occurrence.event_id, capture.pk])
    outcome, waited = race(invariants, "C5", station.project_id, move)

    assert_changed_under_the_repair(outcome, waited)
    assert m.Occurrence.objects.get(pk=occurrence.pk).event_id == occurrence.event_id
    assert m.SourceImage.objects.get(pk=capture.pk).event_id == occurrence.event_id


def test_d7_keeps_active_the_identification_left_alone_when_the_newer_was_withdrawn_during_the_repair(invariants):
    station = f.DeploymentFactory()
    older, newer = identification_scenarios.duplicate_active_identifications(station)

    outcome, waited = race(invariants, "D7", station.project_id,
                           ("UPDATE main_identification SET withdrawn = true WHERE id = %s", [newer.pk]))

    assert_changed_under_the_repair(outcome, waited)
    assert dict(m.Identification.objects.values_list("pk", "withdrawn")) == {older.pk: False, newer.pk: True}


def test_a_repair_that_deadlocks_with_a_writer_gives_way_and_starts_the_batch_again(invariants):
    """The writer changes the phantom's detection, then (while the repair waits for it) the occurrence the
    repair has locked: a deadlock.  The repair's side is cancelled (its deadlock check runs first), its batch
    rolls back to its savepoint, the writer finishes, and the batch, run again, sees the writer's change."""
    station = f.DeploymentFactory()
    phantom = occurrence_scenarios.phantom_occurrence(station)
    marker = m.Detection.objects.get(occurrence=phantom)
    with connection.cursor() as cursor:
        cursor.execute("SET deadlock_timeout = '2s'")  # the writer's is 60s: this side is the victim
    try:
        outcome, waited = race(
            invariants, "F1", station.project_id,
            ("SET deadlock_timeout = '60s'", []),
            ("UPDATE main_detection SET bbox = '[10, 10, 50, 50]' WHERE id = %s", [marker.pk]),
            then=[("UPDATE main_occurrence SET updated_at = now() WHERE id = %s", [phantom.pk])],
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET deadlock_timeout")

    assert_changed_under_the_repair(outcome, waited)
    assert m.Detection.objects.filter(pk=marker.pk, occurrence=phantom, bbox__isnull=False).exists()


def test_every_repair_declares_what_its_condition_reads_and_the_locks_follow(invariants):
    from antenna_invariants.rules import RULES

    undeclared = [r.id for r in RULES.values() if r.repair_func is not None and r.depends_on is None]
    assert undeclared == []
    for entry in RULES.values():
        plan(entry.model, entry.depends_on or ())  # every path resolves
    d1 = {path: (model._meta.db_table, mode) for path, model, _, mode in plan(m.Occurrence, RULES["D1"].depends_on)}
    assert d1 == {  # a new classification on a detection needs the detection: that is locked FOR UPDATE
        "identifications": ("main_identification", "SHARE"),
        "detections": ("main_detection", "UPDATE"),
        "detections__classifications": ("main_classification", "SHARE"),
    }


def test_a_test_per_rule_lets_a_writer_win_in_one_project_and_repairs_the_other(run):
    """The same race through `pytest invariants --tests-per rule --repair` in its own process: one test repairs
    D1 in two projects in turn; Antenna withdraws the evidence of the first project's violator and commits
    while the repair waits for it.  The writer wins there, the other project is repaired, both are journaled."""
    first, second = f.DeploymentFactory(), f.DeploymentFactory()
    raced = occurrence_scenarios.identified_but_undetermined(first)
    plain = occurrence_scenarios.partial_save(second)
    url = url_for(connection.settings_dict)
    writer, monitor = psycopg.connect(url), psycopg.connect(url, autocommit=True)
    writer.execute("UPDATE main_identification SET withdrawn = true WHERE occurrence_id = %s", [raced.pk])
    waited = []

    def commit_once_the_repair_waits():
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            blocked = monitor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                      " AND %s = ANY (pg_blocking_pids(pid))", [writer.info.backend_pid]).fetchone()
            if blocked[0]:
                waited.append(True)
                break
            time.sleep(0.005)
        writer.commit()

    thread = threading.Thread(target=commit_once_the_repair_waits)
    thread.start()
    try:
        code, output = run("-m", "D1", "--tests-per", "rule", "--repair", "--all-projects")
    finally:
        thread.join()
        writer.close()
        monitor.close()

    assert code == 0, output
    assert waited, "the repair did not wait for the writer's transaction"
    results = run.results()
    ours, theirs = results["D1", f"project{first.project_id}"], results["D1", f"project{second.project_id}"]
    assert (ours["violations"], ours["fixed"], ours["changed_under_repair"], ours["status"]) == (1, 0, 1, "repaired")
    assert (theirs["violations"], theirs["fixed"], theirs["status"]) == (1, 1, "repaired")
    assert m.Occurrence.objects.get(pk=raced.pk).determination_id is None  # the writer's change stands
    assert m.Identification.objects.get(occurrence=raced).withdrawn
    assert m.Occurrence.objects.get(pk=plain.pk).determination_id is not None
    assert "1 repaired in" in output  # one test for the rule, its two cases repaired
