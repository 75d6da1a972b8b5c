"""A run's checks: how its cases are checked together, with ``check.check_grouped`` (a rule's project scopes in
one statement), ``shared.check_scan`` (the rules of a shared scan in one statement) and ``blame`` (the ids kept
beyond the sample, attributed to jobs).  The state is the run's ``Checks`` (``session.Session.checks``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import DatabaseError

from antenna_invariants import blame, check, shared
from antenna_invariants.check import Counts, Outcome, timed_out
from antenna_invariants.rules import RULES, Rule, Severity
from antenna_invariants.scope import Scope


class Checks:
    """The checks of one run.  A rule checked in project scopes is checked for all of them by its first
    case, in one grouped statement (one pass over its tables, counting and sampling at once); the other
    cases take their share, and the rules of a table share its rows counted per project.  A grouped
    statement cancelled by the statement timeout leaves the rule to per-project checks."""

    def __init__(self, sample_size: int = 20, rules: Mapping[str, Rule] | None = None, strict: bool = False):
        self.sample_size = sample_size
        self.strict = strict  # --strict: warned cases fail the run, and so are attributed (blame.fails_the_run)
        self.rules = rules  # the run's rules as configured (the registry's when None): a shared scan judges them
        self.pending: dict[str, dict[str, Outcome]] = {}  # rule id -> {scope label: outcome not yet taken}
        self.ungrouped: set[str] = set()
        self.counts = Counts()
        self.shared: dict[str, dict[str, Outcome]] = {}  # what a shared scan found for the rules still to come
        self.unshared: set[str] = set()  # scans that timed out in this run: their rules are checked alone
        # rule id -> {scope label: (violating ids, at most blame.ID_CAP; violations)}: what attribution reads
        self.violators: dict[str, dict[str, tuple[list[int], int]]] = {}
        self.attributions: dict[str, dict[str, Any]] = {}  # rule id -> {scope label: attribution}

    def forget_counts(self) -> None:
        """Before a repair: the rows per project it may change are counted again for the rules that follow,
        and what a shared scan found for them is found again."""
        self.counts.forget()
        self.shared.clear()

    def take(self, entry: Rule, scope: Scope, scopes: list[Scope]) -> Outcome:
        """The outcome of ``entry`` in ``scope``, checked with the other ``scopes`` of the run at once (and
        with the other rules of its shared scan, antenna_invariants.shared)."""
        keep = self._keep(entry)
        if entry.is_global or entry.id in self.ungrouped:
            return self._kept(entry, {scope.label: check.check(entry, scope, keep)})[scope.label]
        if scope.label not in self.pending.get(entry.id, {}):
            try:
                self.pending[entry.id] = self._kept(
                    entry, self._shared(entry, scopes) or check.check_grouped(entry, scopes, keep, self.counts))
            except DatabaseError as exc:
                if not timed_out(exc):
                    raise
                self.ungrouped.add(entry.id)
                return self._kept(entry, {scope.label: check.check(entry, scope, keep)})[scope.label]
        return self.pending[entry.id].pop(scope.label)

    def _shared(self, entry: Rule, scopes: list[Scope]) -> dict[str, Outcome] | None:
        """``entry``'s outcomes from its shared scan, run now for all its members unless an earlier member's
        run left them; None when the rule is checked alone."""
        found = self.shared.pop(entry.id, None)
        if found is not None and all(s.label in found for s in scopes):
            return found
        scan = shared.scan_of(entry)
        if scan is None or scan.name in self.unshared:
            return None
        keeps = [self._keep((self.rules or RULES)[member]) for member in scan.members]
        try:
            results = shared.check_scan(scan, scopes, 0 if 0 in keeps else max(keeps), self.counts, self.rules)
        except DatabaseError as exc:
            if not timed_out(exc):
                raise
            self.unshared.add(scan.name)
            return None
        if results is None:
            return None
        self.shared.update({rule: outcomes for rule, outcomes in results.items() if rule != entry.id})
        return results[entry.id]

    def _keep(self, entry: Rule) -> int:
        """How many ids per case the check returns: the sample, or (for a rule whose rows attribution traces and
        whose cases can fail the run: not a warn rule without --strict) up to ``blame.ID_CAP``, from the same
        statement."""
        warn_only = entry.severity == Severity.WARN and not self.strict
        if self.sample_size == 0 or warn_only or not blame.attributable(entry):
            return self.sample_size
        return max(self.sample_size, blame.ID_CAP)

    def _kept(self, entry: Rule, outcomes: dict[str, Outcome]) -> dict[str, Outcome]:
        """Keep the ids beyond the sample for attribution, and cut the sample back to ``sample_size``."""
        for label, outcome in outcomes.items():
            if outcome.violations:
                self.violators.setdefault(entry.id, {})[label] = (outcome.sample, outcome.violations)
            if self.sample_size:
                outcome.sample = outcome.sample[: self.sample_size]
        return outcomes

    def attribution(self, entry: Rule, label: str, failing: set[str]) -> dict[str, Any]:
        """The attribution of ``entry``'s case ``label`` (README, "Blame"): at the rule's first case that asks,
        every case of the rule in ``failing`` (those that fail the run, ``blame.fails_the_run``) is attributed
        in one statement; the others take theirs."""
        done = self.attributions.setdefault(entry.id, {})
        if label not in done:
            found = self.violators.get(entry.id, {})
            cases = {case: found[case] for case in failing | {label} if case in found}
            cases.setdefault(label, ([], 0))
            done.update({case: a.as_dict() for case, a in blame.attribute_cases(entry, dict(cases)).items()})
        return done.pop(label)
