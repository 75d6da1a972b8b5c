"""Rules: a function that returns the violating rows of one table, plus an optional set-based repair.

    @rule("D1", risk="M")
    def test_occurrence_with_evidence_has_determination(occurrences):
        '''An occurrence with evidence has a determination.'''
        return occurrences.filter(...)

The parameter's name picks the table (``occurrences`` -> main_occurrence) and arrives already narrowed
to the test case's scope.  The decorator checks the declaration (one parameter naming a known table, a known
severity and risk, well-formed thresholds) when the rule's module is imported, registers the rule in
``RULES`` and turns the function into a pytest test parametrized per project (see ``plugin.py``); the engine,
not the rule, counts, samples (``check``), repairs (``repair``) and reports (dbt's model).

A rule's settings are declared with their defaults in the decorator (dbt's test config) and arrive as
keyword-only parameters; a run's copy of the rule (``options.RuleSettings.configured``) carries the values its
ini gives (``invariants_joblog_max_age``), so nothing module-level holds a run's setting:

    @rule("JL1", settings={"joblog_max_age": timedelta(days=90)})
    def test_job_logs_respect_the_retention_age(job_logs, *, joblog_max_age): ...
"""

from __future__ import annotations

import enum
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from django.db.models import Model, QuerySet

from antenna_invariants.errors import RuleDefinitionError
from antenna_invariants.locks import DependsOn
from antenna_invariants.scope import Scope


class Severity(enum.StrEnum):
    """``error`` fails the run; ``warn`` is reported as WARN (and fails only under --strict)."""

    ERROR = "error"
    WARN = "warn"


class Status(enum.StrEnum):
    """What a case came to (the ``status`` of a JSON record, docs/reports.md)."""

    PASSED = "passed"
    FAILED = "failed"
    WARNED = "warned"
    REPAIRED = "repaired"
    BASELINED = "baselined"
    ERROR = "error"
    SKIPPED = "skipped"


RISKS = ("L", "M", "H", "-")  # a repair's risk: low (a pure recompute), medium (users see it), high (deletes)
# the parameter name a rule takes -> the mirror model whose rows it gets
TABLES = {
    "occurrences": "Occurrence",
    "detections": "Detection",
    "classifications": "Classification",
    "identifications": "Identification",
    "captures": "SourceImage",
    "events": "Event",
    "deployments": "Deployment",
    "collections": "SourceImageCollection",
    "collection_images": "CollectionImage",
    "taxa": "Taxon",
    "algorithms": "Algorithm",
    "jobs": "Job",
    "job_logs": "JobLog",
    "taxa_lists": "TaxaList",
    "periodic_tasks": "PeriodicTask",
}


def tables() -> dict[str, Any]:
    """{parameter name: mirror model}."""
    from antenna_invariants.mirror import models

    return {name: getattr(models, model) for name, model in TABLES.items()}


RuleFunc = Callable[..., QuerySet]  # the table's rows in scope (and the rule's settings) -> the violating ones
RepairFunc = Callable[[QuerySet], int | None]  # violators -> rows fixed (None: as many as it was given)
AbsentFunc = Callable[[QuerySet], list[str]]  # the table's rows -> the names of rows that must exist and do not


@dataclass
class Rule:
    id: str
    func: RuleFunc
    table: str
    domain: str
    severity: Severity = Severity.ERROR
    risk: str = "-"
    error_if: str | None = None  # dbt's error_if: fails only beyond this amount (">10", ">0.1%"); default >0
    warn_if: str | None = None  # dbt's warn_if: warns only beyond this amount; default >0
    hint: str = ""  # what a person should do, for rules without a repair
    repair_func: RepairFunc | None = None
    absent_func: AbsentFunc | None = None  # rows that must exist and do not: names, each one more violation
    # --since: None, the rule runs in full; else the lookup paths of the related rows whose change (beside the
    # row's own) can make a row violate, () for a rule that reads only its own row's columns
    incremental: tuple[str, ...] | None = None
    # the repair's lock set: lookup paths from the row to the other rows its violation condition reads
    # (antenna_invariants.locks), () when it reads only the row itself; None for a rule without a repair
    depends_on: tuple[DependsOn, ...] | None = None
    # the rule's settings, {name: value}, passed to its function as keyword arguments: the defaults declared in
    # @rule(settings=...), the ini's values in a run's copy (options.RuleSettings.configured)
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

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
    def model(self) -> type[Model]:
        return tables()[self.table]

    @property
    def is_global(self) -> bool:
        return "project" not in self.model.scope_paths

    def rows(self, scope: Scope) -> QuerySet:
        """Every row of the rule's table in scope (changed since ``--since`` when the rule is incremental):
        the denominator."""
        rows = scope.restrict(self.model.objects.all()).order_by()
        return rows if self.incremental is None else scope.changed(rows, self.incremental)

    def violations(self, scope: Scope) -> QuerySet:
        """The violating rows in scope, as a side-effect-free queryset."""
        return self.violating(self.rows(scope))

    def violating(self, rows: QuerySet) -> QuerySet:
        """The violating ones of ``rows`` (the rule's function, given the rule's settings)."""
        return self.func(rows, **self.settings).order_by()

    def repair(self, func: RepairFunc) -> RepairFunc:
        """Declare ``func(violators) -> rows fixed`` as this rule's repair."""
        self.repair_func = func
        return func

    def absent(self, func: AbsentFunc) -> AbsentFunc:
        """Declare ``func(rows) -> names`` for rows the rule's table must hold and does not (a missing row has no
        id to report): each name counts as a violation and the message lists them (global rules only)."""
        self.absent_func = func
        return func

    @property
    def threshold(self) -> str | None:
        """The thresholds set for the rule (in the rule or the configuration), as shown in reports."""
        set_ = [f"{name} {value}" for name, value in (("warn_if", self.warn_if), ("error_if", self.error_if)) if value]
        return ", ".join(set_) or None

    def judge(self, violations: int, checked: int) -> Status:
        """dbt's order: ``failed`` beyond ``error_if`` (severity error only), else ``warned`` beyond ``warn_if``,
        else ``passed`` (violations within both thresholds are *tolerated*)."""
        if self.severity == Severity.ERROR and exceeds(self.error_if, violations, checked):
            return Status.FAILED
        return Status.WARNED if exceeds(self.warn_if, violations, checked) else Status.PASSED


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


def valid_threshold(threshold: str) -> bool:
    """``>N`` (a whole number of rows) or ``>P%`` (a share of the rows checked)."""
    return bool(THRESHOLD.fullmatch(threshold)) and ("%" in threshold or "." not in threshold)


class Registry(Mapping[str, Rule]):
    """The rules, by catalogue id, in declaration order: what ``@rule`` registers and the engine, the docs and
    undo read.  Read-only to everyone but ``@rule``; ``reset`` empties it (a test that declares rules)."""

    def __init__(self) -> None:
        self._rules: dict[str, Rule] = {}

    def __getitem__(self, rule_id: str) -> Rule:
        return self._rules[rule_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def add(self, entry: Rule) -> None:
        known = self._rules.get(entry.id)
        if known is not None and known.func.__qualname__ != entry.func.__qualname__:
            raise RuleDefinitionError(
                f"rule id {entry.id} is declared twice: {known.func.__module__}.{known.func.__qualname__} "
                f"and {entry.func.__module__}.{entry.func.__qualname__}"
            )
        self._rules[entry.id] = entry

    def reset(self) -> None:
        self._rules.clear()


RULES = Registry()


def _table_of(rule_id: str, func: RuleFunc, settings: Mapping[str, Any]) -> str:
    """The one parameter's name, which names the table (the other parameters are keyword-only, one per
    setting); else a ``RuleDefinitionError`` naming the rule."""
    where = f"@rule({rule_id!r}) on {func.__module__}.{getattr(func, '__qualname__', func)}"
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        raise RuleDefinitionError(f"{where}: not a function") from None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    plain = [p for p in parameters if p.kind in positional]
    keywords = [p for p in parameters if p.kind == inspect.Parameter.KEYWORD_ONLY]
    if len(plain) != 1 or len(plain) + len(keywords) != len(parameters) or plain[0].default is not plain[0].empty:
        raise RuleDefinitionError(
            f"{where}: a rule takes exactly one parameter, named after its table (one of: {', '.join(TABLES)}), "
            f"then its settings as keyword-only parameters"
        )
    table = plain[0].name
    if table not in TABLES:
        raise RuleDefinitionError(f"{where}: no table {table!r}; the parameter names one of: {', '.join(TABLES)}")
    taken = [p.name for p in keywords]
    if sorted(taken) != sorted(settings):
        raise RuleDefinitionError(f"{where}: its keyword-only parameters {taken} are not its settings "
                                  f"{list(settings)}: declare each setting with its default in @rule(settings=...)")
    return table


def _check_options(where: str, severity: str, risk: str, thresholds: dict[str, str | None]) -> None:
    if severity not in tuple(Severity):
        raise RuleDefinitionError(f"{where}: severity {severity!r} is not one of: {', '.join(Severity)}")
    if risk not in RISKS:
        raise RuleDefinitionError(f"{where}: risk {risk!r} is not one of: {', '.join(RISKS)}")
    for name, threshold in thresholds.items():
        if threshold is not None and not valid_threshold(threshold):
            raise RuleDefinitionError(f"{where}: {name} {threshold!r} is not a threshold like >10 or >0.1%")


def rule(
    rule_id: str, *, severity: str = Severity.ERROR, risk: str = "-", error_if: str | None = None,
    warn_if: str | None = None, hint: str = "", incremental: bool | Iterable[str] = False,
    depends_on: Iterable[DependsOn] | None = None, settings: Mapping[str, Any] | None = None,
) -> Callable[[RuleFunc], Callable[[Any], None]]:
    """Register a rule under its catalogue id and return the pytest test that runs it.

    ``incremental``: whether ``--since`` may limit the rule to rows changed since: ``True`` when a violation
    depends only on the row's own columns, a tuple of lookup paths when it also depends on those related rows
    (their change counts too), ``False`` (the default) when deletions, aggregates, other rows of the table or
    the passing of time can make an unchanged row violate: the rule then runs in full and says so.

    ``depends_on``: for a rule with a repair, the rows besides the row itself that its violation condition
    reads, as lookup paths (``("detections__classifications",)``); a repair locks them before it re-checks
    (``antenna_invariants.locks``).  ``()`` when the condition reads only the row's own columns.

    ``settings``: the rule's settings and their defaults, ``{"joblog_max_age": timedelta(days=90)}``; the
    function takes each as a keyword-only parameter, and a run's ini may set it (``invariants_<name>``).

    A wrong declaration (not one parameter naming a table, settings that are not its keyword-only parameters,
    an unknown severity or risk, a malformed threshold, an id declared twice) raises ``RuleDefinitionError``
    here, when the module is imported."""

    def decorate(func: RuleFunc) -> Callable[[Any], None]:
        table = _table_of(rule_id, func, settings or {})
        _check_options(f"@rule({rule_id!r}) on {func.__module__}.{func.__qualname__}", severity, risk,
                       {"error_if": error_if, "warn_if": warn_if})
        domain = func.__module__.rsplit(".", 1)[-1].removeprefix("test_")
        entry = Rule(rule_id, func, table, domain, Severity(severity), risk, error_if, warn_if, hint)
        entry.incremental = None if incremental is False else () if incremental is True else tuple(incremental)
        entry.depends_on = None if depends_on is None else tuple(depends_on)
        entry.settings = MappingProxyType(dict(settings or {}))
        RULES.add(entry)

        def test(invariant_case: Any) -> None:
            invariant_case.run(entry)

        test.__name__ = test.__qualname__ = func.__name__
        # reports (JUnit file/line, pytest's location) point at the rule, not at this wrapper
        source = func.__code__
        test.__code__ = test.__code__.replace(co_filename=source.co_filename, co_firstlineno=source.co_firstlineno)
        test.__doc__ = func.__doc__
        test.__module__ = func.__module__
        test.rule = entry  # type: ignore[attr-defined]
        test.repair = entry.repair  # type: ignore[attr-defined]
        test.absent = entry.absent  # type: ignore[attr-defined]
        return test

    return decorate
