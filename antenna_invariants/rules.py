"""Rules: a function that returns the violating rows of one table, plus an optional set-based repair.

    @rule("D1", risk="M")
    def test_occurrence_with_evidence_has_determination(occurrences):
        '''An occurrence with evidence has a determination.'''
        return occurrences.filter(...)

The parameter's name picks the table (``occurrences`` -> main_occurrence) and arrives already narrowed
to the test case's scope.  The decorator turns the function into a pytest test parametrized per project
(see ``plugin.py``); the engine, not the rule, counts, samples, repairs and reports (dbt's model).
"""

from __future__ import annotations

import inspect
import os
import re
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta

from django.core.exceptions import EmptyResultSet
from django.db import DatabaseError, DataError, IntegrityError, OperationalError, connection, transaction
from django.db.models import Count, Q
from django.db.models.expressions import RawSQL

from antenna_invariants import journal as journal_module
from antenna_invariants import locks
from antenna_invariants.connection import ConfigError
from antenna_invariants.scope import NO_PROJECT, NotApplicable, Scope
from antenna_invariants.sql import AnyOf  # noqa: F401  (registers ``field__any=ids``, used by the repairs)

RULES: dict[str, Rule] = {}
BATCH_SIZE = int(os.environ.get("INVARIANTS_BATCH_SIZE", 5000))


def tables() -> dict:
    from antenna_invariants.mirror import models as m

    return {
        "occurrences": m.Occurrence,
        "detections": m.Detection,
        "classifications": m.Classification,
        "identifications": m.Identification,
        "captures": m.SourceImage,
        "events": m.Event,
        "deployments": m.Deployment,
        "collections": m.SourceImageCollection,
        "collection_images": m.CollectionImage,
        "taxa": m.Taxon,
        "algorithms": m.Algorithm,
        "jobs": m.Job,
        "job_logs": m.JobLog,
        "taxa_lists": m.TaxaList,
        "periodic_tasks": m.PeriodicTask,
    }


# Settings the rules read, from the ini (the plugin sets them at configure time; the self-tests use the defaults).
SETTINGS: dict = {"joblog_max_age": timedelta(days=90)}  # invariants_joblog_max_age (JL1)


@dataclass
class Rule:
    id: str
    func: Callable
    table: str
    domain: str
    severity: str = "error"  # "error" fails the run; "warn" is reported as WARN
    risk: str = "-"
    error_if: str | None = None  # dbt's error_if: fails only beyond this amount (">10", ">0.1%"); default >0
    warn_if: str | None = None  # dbt's warn_if: warns only beyond this amount; default >0
    hint: str = ""  # what a person should do, for rules without a repair
    repair_func: Callable | None = None
    absent_func: Callable | None = None  # rows that must exist and do not: names, each one more violation
    # --since: None, the rule runs in full; else the lookup paths of the related rows whose change (beside the
    # row's own) can make a row violate, () for a rule that reads only its own row's columns
    incremental: tuple[str, ...] | None = None
    # the repair's lock set: lookup paths from the row to the other rows its violation condition reads
    # (antenna_invariants.locks), () when it reads only the row itself; None for a rule without a repair
    depends_on: tuple | None = None

    @property
    def name(self) -> str:
        return self.func.__name__

    @property
    def doc(self) -> str:
        return " ".join((self.func.__doc__ or "").split())

    @property
    def title(self) -> str:
        """The function's name as a phrase: ``occurrence with evidence has a determination``."""
        return self.name.removeprefix("test_").replace("_", " ")

    @property
    def def_line(self) -> int:
        """The 1-based line of the rule's ``def`` (below its decorators): where JUnit annotations point."""
        lines, start = inspect.getsourcelines(self.func)
        return start + next(i for i, line in enumerate(lines) if line.lstrip().startswith("def "))

    @property
    def anchor(self) -> str:
        """The rule's section in docs/invariants.md."""
        return f"docs/invariants.md#{self.id.lower()}"

    @property
    def deletes(self) -> bool:
        """Whether the repair deletes the violating rows (journaled) rather than correcting them."""
        return self.repair_func is not None and "delete_journaled" in self.repair_func.__code__.co_names

    @property
    def model(self):
        return tables()[self.table]

    @property
    def is_global(self) -> bool:
        return "project" not in self.model.scope_paths

    def rows(self, scope: Scope):
        """Every row of the rule's table in scope (changed since ``--since`` when the rule is incremental):
        the denominator."""
        rows = scope.restrict(self.model.objects.all()).order_by()
        return rows if self.incremental is None else scope.changed(rows, self.incremental)

    def violations(self, scope: Scope):
        """The violating rows in scope, as a side-effect-free queryset."""
        return self.func(self.rows(scope)).order_by()

    def repair(self, func: Callable) -> Callable:
        """Declare ``func(violators) -> rows fixed`` as this rule's repair."""
        self.repair_func = func
        return func

    def absent(self, func: Callable) -> Callable:
        """Declare ``func(rows) -> names`` for rows the rule's table must hold and does not (a missing row has no
        id to report): each name counts as a violation and the message lists them (global rules only)."""
        self.absent_func = func
        return func

    @property
    def threshold(self) -> str | None:
        """The thresholds set for the rule (in the rule or the configuration), as shown in reports."""
        set_ = [f"{name} {value}" for name, value in (("warn_if", self.warn_if), ("error_if", self.error_if)) if value]
        return ", ".join(set_) or None

    def judge(self, violations: int, checked: int) -> str:
        """dbt's order: ``failed`` beyond ``error_if`` (severity error only), else ``warned`` beyond ``warn_if``,
        else ``passed`` (violations within both thresholds are *tolerated*)."""
        if self.severity == "error" and exceeds(self.error_if, violations, checked):
            return "failed"
        return "warned" if exceeds(self.warn_if, violations, checked) else "passed"


def exceeds(threshold: str | None, violations: int, checked: int) -> bool:
    limit = (threshold or ">0").lstrip(">").strip()
    if limit.endswith("%"):
        return violations > 0 and (checked == 0 or 100.0 * violations / checked > float(limit[:-1]))
    return violations > int(limit)


# The order a run takes the rules in, so that one --repair pass converges: a repair may change what a later
# rule reads, never what an earlier one reads.  Unlisted rules (structure, copied links, null markers, events,
# jobs, the taxon tree) come first, in collection order; then the taxa caches the default filters read, the
# occurrences' validity (after N1 has unlinked null markers), the classifications' flags the determinations
# read, the determinations (D7's withdrawals first), and last the cached counts, which depend on all of it.
RUN_ORDER = (("K4", "K4b"), ("F1", "F2"), ("G1", "G2", "G3", "G4", "G5", "G6"),
             ("D7", "D1", "D2", "D3", "D4", "D5", "D6"), ("K1", "K2", "K3"))


def run_order(entry: Rule | None) -> tuple[int, int]:
    """Sort key of a rule's cases in a run (a stable sort: unlisted rules keep their collection order)."""
    for phase, ids in enumerate(RUN_ORDER, start=1):
        if entry is not None and entry.id in ids:
            return phase, ids.index(entry.id)
    return 0, 0


THRESHOLD = re.compile(r">\s*\d+(\.\d+)?%?|>\s*\d+")


def set_thresholds(lines: list[str], name: str = "error_if") -> None:
    """Apply ``"RULE >N"`` / ``"RULE >P%"`` lines (ini ``invariants_error_if``, ``invariants_warn_if``)."""
    for rule_id, threshold in _rule_lines(lines, f"invariants_{name}"):
        if not THRESHOLD.fullmatch(threshold) or ("%" not in threshold and "." in threshold):
            raise ConfigError(f"invariants_{name}: {threshold!r} is not a threshold like >10 or >0.1%")
        setattr(RULES[rule_id], name, threshold)


def set_severities(lines: list[str]) -> None:
    """Apply ``"RULE warn"`` / ``"RULE error"`` lines (ini ``invariants_severity``)."""
    for rule_id, severity in _rule_lines(lines, "invariants_severity"):
        if severity not in ("warn", "error"):
            raise ConfigError(f"invariants_severity: {severity!r} is not warn or error")
        RULES[rule_id].severity = severity


def _rule_lines(lines: list[str], option: str):
    for line in lines:
        rule_id, _, value = line.strip().partition(" ")
        if rule_id not in RULES:
            raise ConfigError(f"{option}: no rule {rule_id!r}")
        yield rule_id, value.strip()


def rule(
    rule_id: str, *, severity: str = "error", risk: str = "-", error_if: str | None = None,
    warn_if: str | None = None, hint: str = "", incremental: bool | tuple[str, ...] = False,
    depends_on: tuple | None = None,
):
    """Register a rule under its catalogue id and return the pytest test that runs it.

    ``incremental``: whether ``--since`` may limit the rule to rows changed since: ``True`` when a violation
    depends only on the row's own columns, a tuple of lookup paths when it also depends on those related rows
    (their change counts too), ``False`` (the default) when deletions, aggregates, other rows of the table or
    the passing of time can make an unchanged row violate: the rule then runs in full and says so.

    ``depends_on``: for a rule with a repair, the rows besides the row itself that its violation condition
    reads, as lookup paths (``("detections__classifications",)``); a repair locks them before it re-checks
    (``antenna_invariants.locks``).  ``()`` when the condition reads only the row's own columns."""

    def decorate(func: Callable):
        (table,) = func.__code__.co_varnames[: func.__code__.co_argcount]
        domain = func.__module__.rsplit(".", 1)[-1].removeprefix("test_")
        entry = Rule(rule_id, func, table, domain, severity, risk, error_if, warn_if, hint)
        entry.incremental = None if incremental is False else () if incremental is True else tuple(incremental)
        entry.depends_on = None if depends_on is None else tuple(depends_on)
        if rule_id in RULES and RULES[rule_id].func.__qualname__ != func.__qualname__:
            raise ValueError(f"rule id {rule_id} is declared twice")
        RULES[rule_id] = entry

        def test(invariant_case):
            invariant_case.run(entry)

        test.__name__ = test.__qualname__ = func.__name__
        # reports (JUnit file/line, pytest's location) point at the rule, not at this wrapper
        source = func.__code__
        test.__code__ = test.__code__.replace(co_filename=source.co_filename, co_firstlineno=source.co_firstlineno)
        test.__doc__ = func.__doc__
        test.__module__ = func.__module__
        test.rule = entry
        test.repair = entry.repair
        test.absent = entry.absent
        return test

    return decorate


@dataclass
class Outcome:
    """What one rule x scope produced; one record of reports/invariants.json."""

    rule: str
    project: str
    severity: str
    status: str = "passed"  # passed | failed | warned | repaired | baselined | error | skipped
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
    sample_rows: list[dict] = field(default_factory=list)  # the sample's allowlisted columns (--sample-columns)

    as_dict = asdict


def compiled_sql(queryset) -> str:
    try:
        sql, params = queryset.values("pk").query.sql_with_params()
    except EmptyResultSet:
        return "SELECT NULL WHERE FALSE  -- the scope admits no rows"
    return connection.ops.compose_sql(sql, params)


def first_ids(queryset, limit: int) -> list[int]:
    """The lowest ``limit`` ids of ``queryset`` (0: all).  The violators are found first and sorted after
    (``OFFSET 0`` fences the subquery): a plain ``ORDER BY id LIMIT n`` lets PostgreSQL walk the whole primary
    key index looking for rare violators, seconds on a big table (docs/benchmarks.md)."""
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT v.pk FROM ({sql} OFFSET 0) AS v(pk) ORDER BY v.pk" + (" LIMIT %s" if limit else ""),
                       [*params, limit] if limit else params)
        return [pk for (pk,) in cursor.fetchall()]


@contextmanager
def read_only():
    """A transaction PostgreSQL itself refuses to write in (inside a caller's transaction, as in the
    self-tests, the caller's mode stands)."""
    owns_transaction = not connection.in_atomic_block
    with transaction.atomic():
        if owns_transaction:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION READ ONLY")
        yield


def check(entry: Rule, scope: Scope, sample_size: int = 20) -> Outcome:
    """Count the violations (never capped), take a small ordered sample, count the denominator.  A project
    scope is the one-scope case of ``check_projects``; this body serves global tables and unscoped checks."""
    if scope.project is not None and not entry.is_global:
        return check_projects(entry, [scope], sample_size)[scope.label]
    started = time.perf_counter()
    outcome = Outcome(entry.id, scope.label, entry.severity)
    try:
        violators = entry.violations(scope)
    except NotApplicable as exc:
        outcome.status, outcome.message = "skipped", str(exc)
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
    outcome.sql = compiled_sql(violators)
    _judge(entry, outcome)
    outcome.duration = time.perf_counter() - started
    return outcome


GROUPED = """
SELECT g, pk, n FROM (
    SELECT g, pk, count(*) OVER (PARTITION BY g) AS n, row_number() OVER (PARTITION BY g ORDER BY pk) AS r
      FROM ({violators}) AS v) AS s
 WHERE %s = 0 OR r <= %s
 ORDER BY pk"""


def check_projects(entry: Rule, scopes: list[Scope], sample_size: int = 20, counts: dict | None = None) -> dict[str, Outcome]:
    """``check`` for several project scopes of one rule at once, {label: outcome}: one statement counts and
    samples the violators of every project (grouped by the row's project), so the rule's tables are read
    once, not once per project (docs/benchmarks.md, figure 1).  ``counts`` keeps, for the rules that follow,
    the database's project ids and the rows counted per project and table (the same table, the same counts)."""
    started = time.perf_counter()
    counts = {} if counts is None else counts
    outcomes = {s.label: Outcome(entry.id, s.label, entry.severity) for s in scopes}
    try:  # the rule sees only the scopes' rows (what it computes per row, a recount say, stays within them)
        rows = _in_projects(entry, entry.rows(replace(scopes[0], project=None)), scopes, counts)
        violators = entry.func(rows).order_by()
    except NotApplicable as exc:
        for outcome in outcomes.values():
            outcome.status, outcome.message = "skipped", str(exc)
        return outcomes
    with read_only():
        with connection.cursor() as cursor:  # the violators are few: let workers scan for them in parallel
            cursor.execute("SET LOCAL parallel_tuple_cost = 0.001")
        checked = _rows_per_project(entry, rows, counts)
        for key, pk, count in _grouped(entry, violators, sample_size):
            outcome = outcomes.get(_label(key))  # None: a project created since the run started
            if outcome is not None:
                outcome.violations = count
                outcome.sample.append(pk)
    share = (time.perf_counter() - started) / len(scopes)
    for scope in scopes:
        outcome = outcomes[scope.label]
        outcome.checked = checked.get(scope.label, 0)
        _judge(entry, outcome)
        outcome.sql = compiled_sql(entry.violations(scope))
        outcome.duration = share
    return outcomes


def _label(key) -> str:
    return Scope(project=NO_PROJECT if key is None else key).label


def _in_projects(entry: Rule, queryset, scopes: list[Scope], counts: dict):
    """Keep to the scopes' projects (and to the rows without one, when it is among them); no condition when
    they are every project and the rows without one (a condition on a distant project column would make
    PostgreSQL join every row to it).  The project ids are read once per run (``counts``)."""
    from antenna_invariants.mirror.models import Project

    path = entry.model.scope_paths["project"]
    ids = [s.project for s in scopes if s.project != NO_PROJECT]
    if len(ids) < len(scopes):
        if "projects" not in counts:
            counts["projects"] = set(Project.objects.values_list("pk", flat=True))
        if set(ids) >= counts["projects"]:
            return queryset
    condition = Q(**{f"{path}__in": ids})
    if len(ids) < len(scopes):
        condition |= Q(**{f"{path}__isnull": True})
    return queryset.filter(condition)


def _grouped(entry: Rule, violators, sample_size: int) -> list[tuple]:
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
            rows, params = f"SELECT v.pk, ({project_sql}) AS g FROM ({sql} OFFSET 0) AS v(pk)", [*project_params, *params]
    except EmptyResultSet:
        return []
    with connection.cursor() as cursor:
        cursor.execute(GROUPED.format(violators=rows), [*params, sample_size, sample_size])
        return cursor.fetchall()


def _rows_per_project(entry: Rule, rows, cache: dict) -> dict[str, int]:
    rows = rows.values_list(entry.model.scope_paths["project"]).annotate(n=Count("pk")).order_by()
    try:
        sql, params = rows.query.sql_with_params()
    except EmptyResultSet:
        return {}
    key = (sql, repr(params))
    if key not in cache:
        cache[key] = {_label(project): n for project, n in rows}
    return cache[key]


def _judge(entry: Rule, outcome: Outcome) -> None:
    outcome.status = entry.judge(outcome.violations, outcome.checked)
    outcome.threshold = entry.threshold


def deadlocked(exc) -> bool:
    from psycopg.errors import DeadlockDetected

    return isinstance(exc.__cause__, DeadlockDetected)


def timed_out(exc) -> bool:
    """A query cancelled by ``statement_timeout``."""
    from psycopg.errors import QueryCanceled

    return isinstance(exc.__cause__, QueryCanceled) and "statement timeout" in str(exc)


class Checks:
    """The checks of one run.  A rule checked in project scopes is checked for all of them by its first
    case, in one grouped statement (one pass over its tables, counting and sampling at once); the other
    cases take their share, and the rules of a table share its rows counted per project.  A grouped
    statement cancelled by the statement timeout leaves the rule to per-project checks."""

    def __init__(self, sample_size: int = 20):
        self.sample_size = sample_size
        self.pending: dict[str, dict[str, Outcome]] = {}  # rule id -> {scope label: outcome not yet taken}
        self.ungrouped: set[str] = set()
        self.counts: dict = {}  # the project ids, the rows per project of each table (see ``forget_counts``)

    def forget_counts(self) -> None:
        """Before a repair: the rows per project it may change are counted again for the rules that follow."""
        self.counts.clear()

    def check(self, entry: Rule, scope: Scope, scopes: list[Scope]) -> Outcome:
        if entry.is_global or entry.id in self.ungrouped:
            return check(entry, scope, self.sample_size)
        if scope.label not in self.pending.get(entry.id, {}):
            try:
                self.pending[entry.id] = check_projects(entry, scopes, self.sample_size, self.counts)
            except DatabaseError as exc:
                if not timed_out(exc):
                    raise
                self.ungrouped.add(entry.id)
                return check(entry, scope, self.sample_size)
        return self.pending[entry.id].pop(scope.label)


class RepairRefused(Exception):
    """A repair that would change more of a table than the user allows (``--force`` overrides)."""


@dataclass
class Limits:
    """The blast radius of one repair: at most ``rows`` rows (``--repair-limit``), and no more than ``share``
    of the table unless forced (a rule gone wrong must not rewrite a table); ``floor`` rows are always allowed."""

    rows: int | None = None
    share: float | None = None
    floor: int = 100

    def check(self, entry: Rule, count: int) -> None:
        if self.share is None or count <= self.floor:
            return
        total = entry.model.objects.count()
        if count > self.share * total:
            raise RepairRefused(
                f"the repair would change {count} of the {total} rows of {entry.model._meta.db_table} "
                f"(more than {self.share:.0%}); re-run with --force if that is right"
            )


def repair(entry: Rule, scope: Scope, outcome: Outcome, journal, limits: Limits = Limits(), batch_size: int = BATCH_SIZE):
    """Fix the violators in one transaction, batch by batch (each in a savepoint, its rows locked and
    journaled before the transaction can commit), then re-check.

    A batch whose statement fails is split in two until the failing rows are isolated; those are counted
    as unfixable and the rest still land.  ``fixed`` counts target rows changed, never cascades;
    ``changed_under_repair`` the violators that no longer violated once their rows were locked (a concurrent
    writer's change, which stands).
    """
    if entry.repair_func is None:
        raise ValueError(f"{entry.id} has no repair")
    started = time.perf_counter()
    global REPAIRING
    journal_module.ACTIVE, REPAIRING = journal, (entry.id, scope.label)
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # an FK problem fails its batch, not the commit
            found = list(entry.violations(scope).order_by("pk").values_list("pk", flat=True))
            ids = found[: limits.rows] if limits.rows is not None else found
            limits.check(entry, len(ids))
            for start in range(0, len(ids), batch_size):
                fixed, changed = _repair_batch(entry, scope, ids[start : start + batch_size], journal)
                outcome.fixed, outcome.changed_under_repair = outcome.fixed + fixed, outcome.changed_under_repair + changed
            outcome.remaining = entry.violations(scope).count()
    finally:
        journal_module.ACTIVE, REPAIRING = None, None
    outcome.beyond_limit = len(found) - len(ids)
    outcome.unfixable = max(outcome.remaining - outcome.beyond_limit, 0)
    outcome.journal = journal.path_if_written()
    outcome.journaled = journal.tally(entry.id, scope.label)
    outcome.status = "repaired" if outcome.remaining == 0 else outcome.status
    outcome.duration += time.perf_counter() - started
    return outcome


DEADLOCK_RETRIES = 3  # a batch chosen as a deadlock's victim is tried this many more times


def _repair_batch(entry: Rule, scope: Scope, ids: list[int], journal, attempt: int = 0) -> tuple[int, int]:
    """(rows fixed, rows changed under the repair) of one batch.  Its rows and the rows their condition reads
    are locked first (Antenna's writes to them wait for our commit, and we for its); the condition is then
    evaluated in a later statement, which sees whatever a writer committed while we waited.  A writer that
    locks the same rows in the other order deadlocks with us: when PostgreSQL cancels our side, the batch's
    savepoint is rolled back (its locks released, the writer goes on) and the batch starts again."""
    try:
        with transaction.atomic(), journal.batch(entry.id, scope.label):
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


REPAIRING: tuple[str, str] | None = None  # (rule, scope label) of the repair running


def purge_journaled(queryset) -> int:
    """For repairs that delete rows not worth keeping one by one (old job logs): delete ``queryset``'s rows in
    one statement and journal one ``purge`` line, their count and id range (``Journal.purge``).  Undo cannot
    restore them and says so.  Refused for a table other rows point at (their cascade would go unjournaled)."""
    model = queryset.model
    if journal_module.ACTIVE is None or REPAIRING is None:
        raise RuntimeError("a purging repair needs an active journal")
    if journal_module._reverse_relations(model):
        raise RuntimeError(f"{model._meta.db_table} has dependent rows: delete it with delete_journaled")
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f'WITH gone AS (DELETE FROM "{table}" WHERE id IN ({sql}) RETURNING id) SELECT count(*), min(id), max(id) FROM gone',
            params,
        )
        count, first, last = cursor.fetchone()
    if count:
        journal_module.ACTIVE.purge(*REPAIRING, table, count, first, last)
    return count
