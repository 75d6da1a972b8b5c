"""One test case's run (one rule x scope, inside a test): check, maybe repair, review, record, pass or fail;
a check a hot standby cancels is retried."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from django.db import DatabaseError
from psycopg.errors import SerializationFailure

from antenna_invariants import baseline, blame, reporting, samples
from antenna_invariants import connection as conn
from antenna_invariants.check import Outcome, Status, timed_out
from antenna_invariants.errors import RepairRefused
from antenna_invariants.followups import stale_counts
from antenna_invariants.repair import repair
from antenna_invariants.results import OUTCOME, Record
from antenna_invariants.rules import Rule
from antenna_invariants.scope import Scope
from antenna_invariants.session import Session

# what a case records as JUnit properties (pytest's user_properties), when set
PROPERTIES = ("rule", "project", "status", "violations", "checked", "fixed", "unfixable", "changed_under_repair",
              "baseline", "new")


def case_key(item: pytest.Item) -> tuple[str, str] | None:
    """(rule, scope label) of an invariants case; None for any other item."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "invariant_case" not in params:
        return None
    return item.function.rule.id, params["invariant_case"].label  # type: ignore[attr-defined]


class Case:
    """One rule x scope, run inside a test: check, maybe repair, record the outcome, pass or fail."""

    def __init__(self, item: pytest.Item, session: Session, scope: Scope):
        self.item, self.session, self.scope = item, session, scope

    def run(self, declared: Rule) -> None:
        session, options = self.session, self.session.options
        entry = session.rules[declared.id]  # with this run's severity and thresholds
        outcome = Outcome(entry.id, self.scope.label, entry.severity)
        fingerprint: list[int] | None = None
        origins: Record = {}
        try:
            scopes = session.selected_scopes(entry) or [self.scope]  # what the rule's grouped check covers
            outcome = retried(lambda: session.checks.take(entry, self.scope, scopes))
            repairable = outcome.status == Status.FAILED and options.repair and entry.repair_func is not None
            if repairable and entry.is_global and not options.all_projects:  # scope means scope
                outcome.message = f"not repaired: {entry.id}'s table is global and this repair run is scoped"
            elif repairable and session.journal is not None:
                session.checks.forget_counts()
                repair(entry, self.scope, outcome, session.journal, options.limits)
                outcome.stale = stale_counts(session.journal.touched(entry.id, self.scope.label))
            fingerprint = self._review(entry, outcome)
            origins = self._origins(entry, outcome)
            stored = (Status.FAILED, Status.WARNED, Status.BASELINED)
            if options.store_failures is not None and outcome.status in stored:
                samples.store_failures(options.store_failures, entry, self.scope, outcome.as_dict())
        except RepairRefused as exc:
            outcome.message = f"repair refused: {exc}"
        except DatabaseError as exc:
            outcome.status, outcome.message = Status.ERROR, database_error(exc, options.statement_timeout)
        self.item.stash[OUTCOME] = outcome, fingerprint, origins  # one stash entry: the item lives to the end
        if session.junit_properties:  # xunit1 only: junit.reshape drops a testcase's properties from xunit2
            record = outcome.as_dict() | origins
            self.item.user_properties.extend((key, record[key]) for key in PROPERTIES if record[key] is not None)
        if outcome.status == Status.SKIPPED:
            pytest.skip(outcome.message)
        if outcome.status == Status.ERROR:
            pytest.fail(f"{entry.id} could not run: {outcome.message}", pytrace=False)
        if outcome.status == Status.FAILED or (outcome.status == Status.WARNED and options.strict):
            # message: a refused repair
            record = outcome.as_dict() | origins
            lines = [reporting.failure_message(entry, record, options.scope_option()), outcome.message]
            pytest.fail("\n".join(filter(None, lines)), pytrace=False)

    def _review(self, entry: Rule, outcome: Outcome) -> list[int] | None:
        """Allowlisted sample columns; the baseline's verdict; the ids a baseline keeps (returned)."""
        options = self.session.options
        outcome.sample_rows = samples.sample_rows(entry, outcome.sample, options.sample_columns)
        judged = outcome.status == Status.FAILED or (outcome.status == Status.WARNED and options.strict)
        if not outcome.violations or not (options.write_baseline or (options.baseline and judged)):
            return None
        ids = baseline.fingerprint_ids(entry.violations(self.scope), outcome.violations, outcome.sample)
        if options.baseline and judged:
            options.baseline.judge(outcome, ids)
        return ids


    def _origins(self, entry: Rule, outcome: Outcome) -> Record:
        """A case that fails the run: its most likely origins and when its rows appeared (README, "Blame"), one
        statement for all such cases of the rule; a warned or baselined case says it was not attributed and
        why.  With --baseline or --compare, the first run that saw each sample id."""
        fields: Record = {}
        strict = self.session.options.strict
        if outcome.violations and blame.fails_the_run(outcome.status, strict):
            failing = {label for label, o in self.session.checks.pending.get(entry.id, {}).items()
                       if o.violations and blame.fails_the_run(o.status, strict)}
            fields = blame.record_fields(self.session.checks.attribution(entry, self.scope.label, failing))
        elif outcome.violations and outcome.status in (Status.WARNED, Status.BASELINED):
            fields = blame.record_fields(blame.not_attributed(entry, outcome.status).as_dict())
        options = self.session.options
        key = f"{entry.id}/{self.scope.label}"
        previous = options.previous_records.get(key) if options.previous_records is not None else None
        known = options.baseline
        if outcome.sample and (known is not None or previous is not None) and self.session.run is not None:
            started = self.session.run.started.isoformat(timespec="seconds")
            case = known.cases.get(key) if known is not None else None
            fields["first_seen"] = baseline.first_seen(outcome.sample, started, case,
                                                       known.written if known else None, previous)
        return fields


RECOVERY_RETRIES = 3  # a check cancelled by a hot standby is tried this many more times
RECOVERY_BACKOFF = 0.5  # seconds before the first retry, doubled each time

T = TypeVar("T")


def conflict_with_recovery(exc: BaseException) -> bool:
    """A query a hot standby cancelled because replay needed its rows (SQLSTATE 40001 on a replica)."""
    return isinstance(exc.__cause__, SerializationFailure) and "conflict with recovery" in str(exc)


def retried(check: Callable[[], T]) -> T:
    """``check()``, retried with a short backoff when the standby cancels it; the last error stands."""
    for attempt in range(RECOVERY_RETRIES + 1):
        try:
            return check()
        except DatabaseError as exc:
            if not conflict_with_recovery(exc) or attempt == RECOVERY_RETRIES:
                raise
            time.sleep(RECOVERY_BACKOFF * 2**attempt)
    raise AssertionError("unreachable")


def database_error(exc: DatabaseError, timeout: str) -> str:
    """The one line a case that could not run shows (passwords masked)."""
    if timed_out(exc):
        return f"timed out: a query ran longer than --statement-timeout {timeout}"
    first = conn.mask(str(exc).strip().splitlines()[0])
    if conflict_with_recovery(exc):
        return f"cancelled by the standby (conflict with recovery) {RECOVERY_RETRIES + 1} times: {first}"
    return first
