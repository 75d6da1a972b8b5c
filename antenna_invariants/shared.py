"""Shared scans: rules that are predicates over one expensive computation are checked in one statement.

D2, D3 and D4 each compare an occurrence with its expected determination (``determination.EXPECTED_SQL``);
K1, K2 and K3 each compare a cached count with a recount of the same detections through the default filters.
Checked rule by rule, a full run computes the expected determination of every occurrence three times and
recounts every detection three times.  A ``SharedScan`` computes the shared values once and evaluates every
member's predicate on them, counting and sampling the violators per rule and project in the same statement
(the grouped check of ``check.check_grouped``, with the rule as one more grouping key).  The run keeps the
other members' results until their turn (``runchecks.Checks``).

What each member reports is what its own check reports: the same violators (its own predicate, in the same
SQL, over the same rows), count, sample, denominator and SQL (the rule's own statement, for a person to run).
The self-tests compare both ways on the demo database, and the bench on a generated one.  Read-only like every
check: the shared values live in the statement (subqueries and CTEs), never in a temporary table, which a hot
standby refuses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connection

from antenna_invariants.check import Counts, Outcome, ScopedSQL, judge, read_only, rows_per_project
from antenna_invariants.rules import RULES, Rule
from antenna_invariants.scope import NotApplicable, Scope, group_label, in_projects

Statement = tuple[str, list[Any]]

GROUPED = """
SELECT rule, g, pk, n FROM (
    SELECT rule, g, pk, count(*) OVER (PARTITION BY rule, g) AS n,
           row_number() OVER (PARTITION BY rule, g ORDER BY pk) AS r
      FROM ({violators}) AS v(rule, g, pk)) AS s
 WHERE %s = 0 OR r <= %s
 ORDER BY rule, pk"""


class SharedScan:
    """Rules checked in one statement: ``violators`` gives (rule, project id, row id) for every member's
    violators among each member's rows in scope (``rows``: {rule id: queryset}), or None when the scan cannot
    serve those rows (each member is then checked alone)."""

    name: str
    members: tuple[str, ...]

    def violators(self, rows: dict[str, Any], scopes: Sequence[Scope] = ()) -> Statement | None:
        raise NotImplementedError


@dataclass(frozen=True)
class PredicateScan(SharedScan):
    """Rules of one table whose violations are predicates on ``o`` (the row) and ``e`` (values computed once
    for the rows in scope by ``values``: a function of the rows' ``SELECT id`` SQL giving SQL with one row per
    id, its id in ``e.{key}``)."""

    name: str
    table: str  # the members' table, its alias ``o`` in the predicates
    key: str  # the column of ``values`` holding the row's id
    predicates: tuple[tuple[str, str], ...]  # (rule id, SQL predicate on o and e)
    values: Callable[[str], str]

    @property
    def members(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(rule for rule, _ in self.predicates)

    def violators(self, rows: dict[str, Any], scopes: Sequence[Scope] = ()) -> Statement | None:
        querysets = [rows[rule] for rule in self.members]
        target, params = querysets[0].order_by().values("pk").query.sql_with_params()
        if any(q.query.sql_with_params() != querysets[0].query.sql_with_params() for q in querysets[1:]):
            return None  # the members' rows differ (they do not today: one table, the same scopes)
        hits = ", ".join(f"({predicate})" for _, predicate in self.predicates)
        sql = f"""
            SELECT x.rule, v.g, v.pk FROM (
                SELECT o.id, o.project_id, ARRAY[{hits}]
                  FROM ({self.values(target)}) e JOIN {self.table} o ON o.id = e.{self.key}
                 WHERE {" OR ".join(f"({predicate})" for _, predicate in self.predicates)}) AS v(pk, g, hits)
            CROSS JOIN LATERAL unnest(%s::text[], v.hits) AS x(rule, hit)
             WHERE x.hit"""
        return sql, [*params, list(self.members)]


@dataclass(frozen=True)
class StatementScan(SharedScan):
    """Rules of several tables checked by one statement giving (rule, project id, row id) of every violator:
    ``statement(projects)`` builds it for the rows of the projects ``projects`` (a list of project ids, None
    for the rows without one), or for every row when ``projects`` is None (a full run).  It serves runs scoped
    by project only (each member is checked alone under --job or --occurrence)."""

    name: str
    members: tuple[str, ...]
    statement: Callable[[list[int | None] | None], str]

    def violators(self, rows: dict[str, Any], scopes: Sequence[Scope] = ()) -> Statement | None:
        if not any(rows[rule].query.where for rule in self.members):
            return self.statement(None), []
        if any(s.job is not None or s.occurrence_ids is not None or s.project is None for s in scopes):
            return None
        return self.statement([s.project if isinstance(s.project, int) else None for s in scopes]), []


def project_condition(alias: str, projects: list[int | None] | None) -> str:
    """SQL: the row ``alias`` belongs to one of ``projects`` (ids, None for no project); TRUE for None."""
    if projects is None:
        return "TRUE"
    ids = sorted({int(p) for p in projects if p is not None})
    tests = ([f"{alias}.project_id IN ({', '.join(map(str, ids))})"] if ids else []) + (
        [f"{alias}.project_id IS NULL"] if None in projects else [])
    return f"({' OR '.join(tests) or 'FALSE'})"


SCANS: dict[str, SharedScan] = {}  # rule id -> its scan (a definition, like rules.RULES; results live on the run)


def share(scan: SharedScan) -> SharedScan:
    """Register ``scan`` for its members (called next to the rules' definitions)."""
    for rule in scan.members:
        SCANS[rule] = scan
    return scan


def scan_of(entry: Rule) -> SharedScan | None:
    """The scan ``entry`` is checked in, if any (a rule limited by ``--since`` is checked alone)."""
    scan = SCANS.get(entry.id)
    return scan if scan is not None and entry.incremental is None else None


def check_scan(
    scan: SharedScan, scopes: list[Scope], sample_size: int = 20, counts: Counts | None = None,
    rules: Mapping[str, Rule] | None = None,
) -> dict[str, dict[str, Outcome]] | None:
    """Every member of ``scan`` for the project ``scopes`` at once: {rule id: {scope label: Outcome}}, each
    exactly what ``check.check_grouped`` gives that rule alone (``rules``: the run's rules, as configured; the
    registry's by default); None when the scan cannot serve these scopes."""
    started = time.perf_counter()
    counts = Counts() if counts is None else counts
    entries = [(rules or RULES)[rule] for rule in scan.members]
    outcomes = {e.id: {s.label: Outcome(e.id, s.label, e.severity) for s in scopes} for e in entries}
    try:
        rows = {e.id: in_projects(e.rows(replace(scopes[0], project=None)), e.model.scope_paths["project"], scopes,
                                  counts.project_ids) for e in entries}
        statement = scan.violators(rows, scopes)
    except (NotApplicable, EmptyResultSet):
        return None  # each member alone says why it is skipped, or finds nothing
    if statement is None:
        return None
    sql, params = statement
    with read_only():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL parallel_tuple_cost = 0.001")  # as a grouped check: few violators
            cursor.execute(GROUPED.format(violators=sql), [*params, sample_size, sample_size])
            found = cursor.fetchall()
        checked = {e.id: rows_per_project(e, rows[e.id], counts) for e in entries}
    for rule, key, pk, count in found:
        outcome = outcomes[rule].get(group_label(key))  # None: a project created since the run started
        if outcome is not None:
            outcome.violations = count
            outcome.sample.append(pk)
    share_ = (time.perf_counter() - started) / (len(scopes) * len(entries))
    for entry in entries:
        failing = any(o.violations for o in outcomes[entry.id].values())
        scoped_sql = ScopedSQL(entry, scopes[0]) if failing else None
        for scope in scopes:
            outcome = outcomes[entry.id][scope.label]
            outcome.checked = checked[entry.id].get(scope.label, 0)
            judge(entry, outcome)
            if scoped_sql is not None and outcome.violations:  # a case without violations carries no SQL
                outcome.sql = scoped_sql.of(scope)
            outcome.duration = share_
    return outcomes
