"""Repairing one rule x scope: its limits, its batches (each locked, re-checked and journaled before the
transaction can commit), the re-check that counts what remains.

The engine's invariants: every batch's rows are journaled (``Journal.batch``) before the transaction commits;
a repair's statement re-checks the violation condition on rows locked first (``locks``); check mode never
reaches this module.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from django.db import DataError, IntegrityError, OperationalError, connection, transaction
from psycopg.errors import DeadlockDetected

from antenna_invariants import locks
from antenna_invariants.check import Outcome, Status
from antenna_invariants.errors import RepairRefused
from antenna_invariants.journal import Journal
from antenna_invariants.rules import Rule
from antenna_invariants.scope import Scope
from antenna_invariants.sql import AnyOf  # noqa: F401  (registers ``field__any=ids``, used by the batches)

BATCH_SIZE = int(os.environ.get("INVARIANTS_BATCH_SIZE", 5000))
DEADLOCK_RETRIES = 3  # a batch chosen as a deadlock's victim is tried this many more times


@dataclass(frozen=True)
class Limits:
    """The blast radius of one repair: at most ``rows`` rows (``--repair-limit``), and no more than ``share``
    of the table unless forced (``None``: a rule gone wrong must not rewrite a table); ``floor`` rows are
    always allowed."""

    rows: int | None = None
    share: float | None = None
    floor: int = 100

    def enforce(self, entry: Rule, count: int) -> None:
        """Raise ``RepairRefused`` when changing ``count`` rows of ``entry``'s table exceeds the share."""
        if self.share is None or count <= self.floor:
            return
        total = entry.model.objects.count()
        if count > self.share * total:
            raise RepairRefused(
                f"the repair would change {count} of the {total} rows of {entry.model._meta.db_table} "
                f"(more than {self.share:.0%}); re-run with --force if that is right"
            )


def repair(
    entry: Rule, scope: Scope, outcome: Outcome, journal: Journal, limits: Limits | None = None,
    batch_size: int = BATCH_SIZE,
) -> Outcome:
    """Fix the violators in one transaction, batch by batch (each in a savepoint, its rows locked and
    journaled before the transaction can commit), then re-check.

    A batch whose statement fails is split in two until the failing rows are isolated; those are counted
    as unfixable and the rest still land.  ``fixed`` counts target rows changed, never cascades;
    ``changed_under_repair`` the violators that no longer violated once their rows were locked (a concurrent
    writer's change, which stands).
    """
    if entry.repair_func is None:
        raise ValueError(f"{entry.id} has no repair")
    limits = Limits() if limits is None else limits
    started = time.perf_counter()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # an FK problem fails its batch, not the commit
        found = list(entry.violations(scope).order_by("pk").values_list("pk", flat=True))
        ids = found[: limits.rows] if limits.rows is not None else found
        limits.enforce(entry, len(ids))
        for start in range(0, len(ids), batch_size):
            fixed, changed = _repair_batch(entry, scope, ids[start : start + batch_size], journal)
            outcome.fixed, outcome.changed_under_repair = outcome.fixed + fixed, outcome.changed_under_repair + changed
        remaining = entry.violations(scope).count()
    outcome.remaining = remaining
    outcome.beyond_limit = len(found) - len(ids)
    outcome.unfixable = max(remaining - outcome.beyond_limit, 0)
    outcome.journal = journal.path_if_written()
    outcome.journaled = journal.tally(entry.id, scope.label)
    outcome.status = Status.REPAIRED if remaining == 0 else outcome.status
    outcome.duration += time.perf_counter() - started
    return outcome


def deadlocked(exc: BaseException) -> bool:
    return isinstance(exc.__cause__, DeadlockDetected)


def _repair_batch(entry: Rule, scope: Scope, ids: list[int], journal: Journal, attempt: int = 0) -> tuple[int, int]:
    """(rows fixed, rows changed under the repair) of one batch.  Its rows and the rows their condition reads
    are locked first (Antenna's writes to them wait for our commit, and we for its); the condition is then
    evaluated in a later statement, which sees whatever a writer committed while we waited.  A writer that
    locks the same rows in the other order deadlocks with us: when PostgreSQL cancels our side, the batch's
    savepoint is rolled back (its locks released, the writer goes on) and the batch starts again."""
    assert entry.repair_func is not None
    try:
        returning = (entry.model._meta.db_table,) if getattr(entry.repair_func, "returns_images", False) else ()
        with transaction.atomic(), journal.batch(entry.id, scope.label, returning):
            journal.watch(entry.model, ids)
            locks.lock(entry.model, entry.depends_on or (), ids)
            still = list(entry.violations(scope).filter(pk__any=ids).values_list("pk", flat=True))
            fixed = entry.repair_func(entry.violations(scope).filter(pk__any=still)) if still else 0
            return fixed or 0, len(ids) - len(still)
    except OperationalError as exc:
        if not deadlocked(exc) or attempt == DEADLOCK_RETRIES:
            raise
        return _repair_batch(entry, scope, ids, journal, attempt + 1)
    except (IntegrityError, DataError):  # a constraint refused some rows: isolate them (a timeout is not retried)
        if len(ids) == 1:
            return 0, 0
        middle = len(ids) // 2
        halves = _repair_batch(entry, scope, ids[:middle], journal), _repair_batch(entry, scope, ids[middle:], journal)
        return halves[0][0] + halves[1][0], halves[0][1] + halves[1][1]
