"""An invariants test's run: one rule x scope, or each selected scope of a rule in turn (``--tests-per rule``):
check, maybe repair, review, record, pass or fail; a check a hot standby cancels is retried."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pytest
from django.db import DatabaseError
from psycopg.errors import SerializationFailure

from antenna_invariants import baseline, blame, reporting, samples
from antenna_invariants import connection as conn
from antenna_invariants.check import Outcome, Status, timed_out
from antenna_invariants.errors import RepairRefused
from antenna_invariants.followups import stale_counts
from antenna_invariants.junit import PROPERTIES  # what a case records as JUnit properties, when set
from antenna_invariants.repair import repair
from antenna_invariants.results import OUTCOME, Record
from antenna_invariants.rules import Rule
from antenna_invariants.scope import Scope
from antenna_invariants.session import Session


def scopes_of(item: pytest.Item) -> tuple[Scope, ...]:
    """The scopes an invariants test covers: one (a test per rule x scope) or every selected scope of its rule
    (a test per rule, ``--tests-per rule``); () for any other item."""
    param = getattr(getattr(item, "callspec", None), "params", {}).get("invariant_case")
    if param is None:
        return ()
    return param if isinstance(param, tuple) else (param,)


def covers_a_rule(item: pytest.Item) -> bool:
    """Whether an invariants test is a test per rule (its parameter: the rule's scopes), not one per case."""
    return isinstance(getattr(getattr(item, "callspec", None), "params", {}).get("invariant_case"), tuple)


def case_keys(item: pytest.Item) -> list[tuple[str, str]]:
    """(rule, scope label) of each case an item covers; [] for an item that is not an invariants test."""
    return [(item.function.rule.id, scope.label) for scope in scopes_of(item)]  # type: ignore[attr-defined]


def verdict(entry: Rule, record: Mapping[str, Any], strict: bool, scope_option: str | None) -> tuple[str, str] | None:
    """What a case's record makes of its test: ("skip" | "error" | "fail", message), or None (it passes)."""
    status = record["status"]
    if status == Status.SKIPPED:
        return "skip", record["message"]
    if status == Status.ERROR:
        return "error", f"{entry.id} could not run: {record['message']}"
    if blame.fails_the_run(status, strict):
        # message: a refused repair
        lines = [reporting.failure_message(entry, record, scope_option), record["message"]]
        return "fail", "\n".join(filter(None, lines))
    return None


def fails_the_run(status: Status, strict: bool) -> bool:
    """Whether a case's test fails: it could not run, or its violations fail the run (``blame.fails_the_run``)."""
    return status == Status.ERROR or blame.fails_the_run(status, strict)


SHOWN_CASES = 10  # a test per rule: the failing cases its failure message lists (the reports have them all)


class Case:
    """An invariants test: one rule x scope (or each selected scope of a rule in turn): check, maybe repair,
    record the outcomes, pass or fail."""

    def __init__(self, item: pytest.Item, session: Session):
        self.item, self.session = item, session
        self.per_rule = covers_a_rule(item)  # a test per rule (--tests-per rule), covering these scopes
        self.scopes = scopes_of(item)

    def run(self, declared: Rule) -> None:
        session, options = self.session, self.session.options
        entry = session.rules[declared.id]  # with this run's severity and thresholds
        finished = []
        for scope in self.scopes:
            outcome, fingerprint, origins = self._run_scope(entry, scope)
            finished.append((outcome, fingerprint, origins, fails_the_run(outcome.status, options.strict)))
        self.item.stash[OUTCOME] = finished  # one stash entry: the item lives to the end
        if self.per_rule:  # its cases' JUnit properties come from junit.reshape, which expands it into them
            self._rule_verdict(entry, [o for o, *_ in finished], [o for o, _, _, fails in finished if fails])
            return
        outcome, _, origins, _ = finished[0]
        record = outcome.as_dict() | origins
        if session.junit_properties:  # xunit1 only: junit.reshape drops a testcase's properties from xunit2
            self.item.user_properties.extend((key, record[key]) for key in PROPERTIES if record[key] is not None)
        found = verdict(entry, record, options.strict, options.scope_option())
        if found is not None and found[0] == "skip":
            pytest.skip(found[1])
        elif found is not None:
            pytest.fail(found[1], pytrace=False)

    def _rule_verdict(self, entry: Rule, outcomes: list[Outcome], failing: list[Outcome]) -> None:
        """A test per rule fails when one of its cases would (each case keeps its own record, HTML cell and JUnit
        testcase all the same); its message lists the first ``SHOWN_CASES`` of them, one line each."""
        if outcomes and all(o.status == Status.SKIPPED for o in outcomes):
            pytest.skip(outcomes[0].message)
        if not failing:
            return
        lines = [f"{len(failing)} of {len(outcomes)} cases of {entry.id} fail the run"]
        for o in failing[:SHOWN_CASES]:
            found = f"could not run: {o.message}" if o.status == Status.ERROR else (
                f"{o.violations} violating {entry.table} of {o.checked} checked")
            lines.append(f"{entry.id}-{o.scope}: {found}")
        if len(failing) > SHOWN_CASES:
            lines.append(f"... and {len(failing) - SHOWN_CASES} more (reports: invariants.json, report.html)")
        pytest.fail("\n".join(lines), pytrace=False)

    def _run_scope(self, entry: Rule, scope: Scope) -> tuple[Outcome, list[int] | None, Record]:
        session, options = self.session, self.session.options
        outcome = Outcome(entry.id, scope.label, entry.severity)
        fingerprint: list[int] | None = None
        origins: Record = {}
        try:
            scopes = session.selected_scopes(entry) or [scope]  # what the rule's grouped check covers
            outcome = retried(lambda: session.checks.take(entry, scope, scopes))
            repairable = outcome.status == Status.FAILED and options.repair and entry.repair_func is not None
            if repairable and entry.is_global and not options.all_projects:  # scope means scope
                outcome.message = f"not repaired: {entry.id}'s table is global and this repair run is scoped"
            elif repairable and session.journal is not None:
                session.checks.forget_counts()
                repair(entry, scope, outcome, session.journal, options.limits)
                outcome.stale = stale_counts(session.journal.touched(entry.id, scope.label))
            fingerprint = self._review(entry, scope, outcome)
            origins = self._origins(entry, scope, outcome)
            stored = (Status.FAILED, Status.WARNED, Status.BASELINED)
            if options.store_failures is not None and outcome.status in stored:
                samples.store_failures(options.store_failures, entry, scope, outcome.as_dict())
        except RepairRefused as exc:
            outcome.message = f"repair refused: {exc}"
        except DatabaseError as exc:
            outcome.status, outcome.message = Status.ERROR, database_error(exc, options.statement_timeout)
        return outcome, fingerprint, origins

    def _review(self, entry: Rule, scope: Scope, outcome: Outcome) -> list[int] | None:
        """Allowlisted sample columns; the baseline's verdict; the ids a baseline keeps (returned)."""
        options = self.session.options
        outcome.sample_rows = samples.sample_rows(entry, outcome.sample, options.sample_columns)
        judged = outcome.status == Status.FAILED or (outcome.status == Status.WARNED and options.strict)
        if not outcome.violations or not (options.write_baseline or (options.baseline and judged)):
            return None
        ids = baseline.fingerprint_ids(entry.violations(scope), outcome.violations, outcome.sample)
        if options.baseline and judged:
            options.baseline.judge(outcome, ids)
        return ids


    def _origins(self, entry: Rule, scope: Scope, outcome: Outcome) -> Record:
        """A case that fails the run: its most likely origins and when its rows appeared (README, "Blame"), one
        statement for all such cases of the rule; a warned or baselined case says it was not attributed and
        why.  With --baseline or --compare, the first run that saw each sample id."""
        fields: Record = {}
        strict = self.session.options.strict
        if outcome.violations and blame.fails_the_run(outcome.status, strict):
            failing = {label for label, o in self.session.checks.pending.get(entry.id, {}).items()
                       if o.violations and blame.fails_the_run(o.status, strict)}
            fields = blame.record_fields(self.session.checks.attribution(entry, scope.label, failing))
        elif outcome.violations and outcome.status in (Status.WARNED, Status.BASELINED):
            fields = blame.record_fields(blame.not_attributed(entry, outcome.status).as_dict())
        options = self.session.options
        key = f"{entry.id}/{scope.label}"
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
