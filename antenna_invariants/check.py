"""Checking: a rule's violations counted, sampled and judged in one scope, or in several project scopes at once
(one grouped statement), read-only; what a case produced (``Outcome``) and its ``Status``.

``check`` is the one entry point for one scope; ``Checks`` serves a run's cases, grouping the project scopes
of a rule into one statement (``check_grouped``) and sharing the rows counted per project between rules.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, QuerySet
from django.db.models.expressions import RawSQL
from psycopg.errors import QueryCanceled

from antenna_invariants.rules import Rule, Severity, Status
from antenna_invariants.scope import NotApplicable, Scope, group_label, in_projects

__all__ = ["Checks", "Counts", "Outcome", "Status", "check", "check_grouped", "compiled_sql", "read_only"]


@dataclass
class Outcome:
    """What one rule x scope produced; one record of reports/invariants.json (``as_dict``: plain values, the
    scope label under its documented key ``project``)."""

    rule: str
    scope: str  # the scope's label: project5, noproject, global
    severity: Severity
    status: Status = Status.PASSED
    violations: int = 0
    checked: int = 0
    sample: list[int] = field(default_factory=list)
    fixed: int = 0
    unfixable: int = 0
    changed_under_repair: int = 0  # violators a concurrent writer changed so that they no longer violate
    beyond_limit: int = 0  # violators left alone because of --repair-limit
    remaining: int | None = None
    sql: str = ""
    duration: float = 0.0
    message: str = ""
    journal: str | None = None
    journaled: dict[str, int] = field(default_factory=dict)  # rows journaled per "op table", cascades included
    stale: list[str] = field(default_factory=list)  # count rules (K1..) whose cached values the repair made stale
    baseline: int | None = None  # violations known from --baseline (None: no baseline)
    new: int | None = None  # violations not in the baseline
    new_case: bool | None = None  # the baseline has no violation of this rule x scope (None: no baseline)
    new_ids: list[int] | None = None  # which ids are new (None: no baseline, or beyond its id cap)
    threshold: str | None = None  # the warn_if / error_if applied, when set
    sample_rows: list[dict[str, Any]] = field(default_factory=list)  # allowlisted columns (--sample-columns)

    def as_dict(self) -> dict[str, Any]:
        """The JSON record: enums as their plain string values (xdist's channel and JSON take only plain
        types), in the documented key order; lists and dicts copied one level (``asdict``'s deep copy cost
        each case as much as the rest of its record)."""
        record = {key: value.copy() if isinstance(value, list | dict) else value for key, value in vars(self).items()}
        record["status"], record["severity"] = self.status.value, Severity(self.severity).value
        return {("project" if key == "scope" else key): value for key, value in record.items()}


def compiled_sql(queryset: QuerySet) -> str:
    try:
        sql, params = queryset.values("pk").query.sql_with_params()
    except EmptyResultSet:
        return "SELECT NULL WHERE FALSE  -- the scope admits no rows"
    return connection.ops.compose_sql(sql, params)


def first_ids(queryset: QuerySet, limit: int) -> list[int]:
    """The lowest ``limit`` ids of ``queryset`` (0: all).  The violators are found first and sorted after
    (``OFFSET 0`` fences the subquery): a plain ``ORDER BY id LIMIT n`` lets PostgreSQL walk the whole primary
    key index looking for rare violators, seconds on a big table (docs/benchmarks.md)."""
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT v.pk FROM ({sql} OFFSET 0) AS v(pk) ORDER BY v.pk" + (" LIMIT %s" if limit else ""),
                       [*params, limit] if limit else params)
        return [pk for (pk,) in cursor.fetchall()]


@contextmanager
def read_only() -> Iterator[None]:
    """A transaction PostgreSQL itself refuses to write in (inside a caller's transaction, as in the
    self-tests, the caller's mode stands).  Every read of a check goes through it."""
    owns_transaction = not connection.in_atomic_block
    with transaction.atomic():
        if owns_transaction:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION READ ONLY")
        yield


def timed_out(exc: BaseException) -> bool:
    """A query cancelled by ``statement_timeout``."""
    return isinstance(exc.__cause__, QueryCanceled) and "statement timeout" in str(exc)


def check(entry: Rule, scope: Scope, sample_size: int = 20) -> Outcome:
    """Count the violations (never capped), take a small ordered sample, count the denominator.  A project
    scope is the one-scope case of ``check_grouped``; this body serves global tables and unscoped checks."""
    if scope.project is not None and not entry.is_global:
        return check_grouped(entry, [scope], sample_size)[scope.label]
    started = time.perf_counter()
    outcome = Outcome(entry.id, scope.label, entry.severity)
    try:
        violators = entry.violations(scope)
    except NotApplicable as exc:
        outcome.status, outcome.message = Status.SKIPPED, str(exc)
        return outcome
    with read_only():
        outcome.violations = violators.count()
        outcome.checked = entry.rows(scope).count()
        if outcome.violations:
            outcome.sample = first_ids(violators, sample_size)
        missing = entry.absent_func(entry.rows(scope)) if entry.absent_func else []
    if missing:
        outcome.violations += len(missing)
        outcome.message = f"missing: {', '.join(missing)}"
    outcome.sql = compiled_sql(violators) if outcome.violations else ""  # a case without violations: no SQL
    _judge(entry, outcome)
    outcome.duration = time.perf_counter() - started
    return outcome


@dataclass
class Counts:
    """What the rules of a run share: the database's project ids (read once) and the rows counted per project
    of each table (the same table in the same scopes, the same counts).  ``forget`` before a repair."""

    projects: set[int] | None = None
    rows: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    def project_ids(self) -> set[int]:
        if self.projects is None:
            from antenna_invariants.mirror.models import Project

            self.projects = set(Project.objects.values_list("pk", flat=True))
        return self.projects

    def forget(self) -> None:
        self.projects, self.rows = None, {}


GROUPED = """
SELECT g, pk, n FROM (
    SELECT g, pk, count(*) OVER (PARTITION BY g) AS n, row_number() OVER (PARTITION BY g ORDER BY pk) AS r
      FROM ({violators}) AS v) AS s
 WHERE %s = 0 OR r <= %s
 ORDER BY pk"""


def check_grouped(
    entry: Rule, scopes: list[Scope], sample_size: int = 20, counts: Counts | None = None
) -> dict[str, Outcome]:
    """``check`` for several project scopes of one rule at once, {label: outcome}: one statement counts and
    samples the violators of every project (grouped by the row's project), so the rule's tables are read
    once, not once per project (docs/benchmarks.md, figure 1).  ``counts`` is shared with the rules that follow."""
    started = time.perf_counter()
    counts = Counts() if counts is None else counts
    outcomes = {s.label: Outcome(entry.id, s.label, entry.severity) for s in scopes}
    path = entry.model.scope_paths["project"]
    try:  # the rule sees only the scopes' rows (what it computes per row, a recount say, stays within them)
        rows = in_projects(entry.rows(replace(scopes[0], project=None)), path, scopes, counts.project_ids)
        violators = entry.func(rows).order_by()
    except NotApplicable as exc:
        for outcome in outcomes.values():
            outcome.status, outcome.message = Status.SKIPPED, str(exc)
        return outcomes
    with read_only():
        with connection.cursor() as cursor:  # the violators are few: let workers scan for them in parallel
            cursor.execute("SET LOCAL parallel_tuple_cost = 0.001")
        checked = _rows_per_project(entry, rows, counts)
        for key, pk, count in _grouped(entry, violators, sample_size):
            found = outcomes.get(group_label(key))  # None: a project created since the run started
            if found is not None:
                found.violations = count
                found.sample.append(pk)
    share = (time.perf_counter() - started) / len(scopes)
    sql = ScopedSQL(entry, scopes[0]) if any(o.violations for o in outcomes.values()) else None
    for scope in scopes:
        outcome = outcomes[scope.label]
        outcome.checked = checked.get(scope.label, 0)
        _judge(entry, outcome)
        if sql is not None and outcome.violations:  # a case without violations carries no SQL
            outcome.sql = sql.of(scope)
        outcome.duration = share
    return outcomes


class ScopedSQL:
    """A rule's SQL for each project scope of a run, compiled once: the scopes differ only in the project id,
    which a placeholder id stands for in the compiled text (building and compiling a queryset per case cost
    as much as the rest of the case; docs/benchmarks.md, figure 6).  A text without the placeholder (the
    project is not in it as a literal) is compiled per scope."""

    PLACEHOLDER = 2147481357  # an int4 no project has; compiled as this literal
    LITERAL = re.compile(rf"(?<![\w.]){PLACEHOLDER}(?![\w.])")

    def __init__(self, entry: Rule, scope: Scope):
        self.entry = entry
        self.template = compiled_sql(entry.violations(replace(scope, project=self.PLACEHOLDER)))
        self.templated = self.LITERAL.search(self.template) is not None

    def of(self, scope: Scope) -> str:
        if not self.templated or not isinstance(scope.project, int) or scope.project == self.PLACEHOLDER:
            return compiled_sql(self.entry.violations(scope))
        return self.LITERAL.sub(str(scope.project), self.template)


def _grouped(entry: Rule, violators: QuerySet, sample_size: int) -> list[tuple[int | None, int, int]]:
    """(project, id, violations of that project) for the first ``sample_size`` violators of each project.  A
    project reached through other tables is looked up for each violator once they are found (usually few);
    joining the chain first would read all of it."""
    path = entry.model.scope_paths["project"]
    try:
        if "__" not in path:
            sql, params = violators.order_by().values_list("pk", path).query.sql_with_params()
            rows = f"SELECT v.* FROM ({sql}) AS v(pk, g)"
        else:
            sql, params = violators.order_by().values("pk").query.sql_with_params()
            lookup = entry.model.objects.filter(pk=RawSQL("v.pk", ())).order_by().values_list(path)[:1]
            project_sql, project_params = lookup.query.sql_with_params()
            rows = f"SELECT v.pk, ({project_sql}) AS g FROM ({sql} OFFSET 0) AS v(pk)"
            params = (*project_params, *params)
    except EmptyResultSet:
        return []
    with connection.cursor() as cursor:
        cursor.execute(GROUPED.format(violators=rows), [*params, sample_size, sample_size])
        return cursor.fetchall()


def _rows_per_project(entry: Rule, rows: QuerySet, counts: Counts) -> dict[str, int]:
    per_project = rows.values_list(entry.model.scope_paths["project"]).annotate(n=Count("pk")).order_by()
    try:
        sql, params = per_project.query.sql_with_params()
    except EmptyResultSet:
        return {}
    key = (sql, repr(params))
    if key not in counts.rows:
        counts.rows[key] = {group_label(project): n for project, n in per_project}
    return counts.rows[key]


def _judge(entry: Rule, outcome: Outcome) -> None:
    outcome.status = entry.judge(outcome.violations, outcome.checked)
    outcome.threshold = entry.threshold


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
            return self._kept(entry, {scope.label: check(entry, scope, keep)})[scope.label]
        if scope.label not in self.pending.get(entry.id, {}):
            try:
                self.pending[entry.id] = self._kept(
                    entry, self._shared(entry, scopes) or check_grouped(entry, scopes, keep, self.counts))
            except DatabaseError as exc:
                if not timed_out(exc):
                    raise
                self.ungrouped.add(entry.id)
                return self._kept(entry, {scope.label: check(entry, scope, keep)})[scope.label]
        return self.pending[entry.id].pop(scope.label)

    def _shared(self, entry: Rule, scopes: list[Scope]) -> dict[str, Outcome] | None:
        """``entry``'s outcomes from its shared scan, run now for all its members unless an earlier member's
        run left them; None when the rule is checked alone."""
        from antenna_invariants.rules import RULES
        from antenna_invariants.shared import check_scan, scan_of

        found = self.shared.pop(entry.id, None)
        if found is not None and all(s.label in found for s in scopes):
            return found
        scan = scan_of(entry)
        if scan is None or scan.name in self.unshared:
            return None
        keeps = [self._keep((self.rules or RULES)[member]) for member in scan.members]
        try:
            results = check_scan(scan, scopes, 0 if 0 in keeps else max(keeps), self.counts, self.rules)
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
        from antenna_invariants.blame import ID_CAP, attributable

        warn_only = entry.severity == Severity.WARN and not self.strict
        if self.sample_size == 0 or warn_only or not attributable(entry):
            return self.sample_size
        return max(self.sample_size, ID_CAP)

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
        from antenna_invariants.blame import attribute_cases

        done = self.attributions.setdefault(entry.id, {})
        if label not in done:
            found = self.violators.get(entry.id, {})
            cases = {case: found[case] for case in failing | {label} if case in found}
            cases.setdefault(label, ([], 0))
            done.update({case: a.as_dict() for case, a in attribute_cases(entry, dict(cases)).items()})
        return done.pop(label)
