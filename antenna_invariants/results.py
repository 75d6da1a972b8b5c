"""The run's results on ``config.stash`` (typed keys, nothing module-level): each case's outcome on its item,
the records the controller collects for the reports, and what ``--compare`` compares them with."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from antenna_invariants import baseline, reporting
from antenna_invariants.check import Outcome
from antenna_invariants.rules import Rule

Record = dict[str, Any]  # one case's JSON record (docs/reports.md)

# on the item, from its test to its call report: per case it covers, what the case produced, the ids a baseline
# keeps, the attribution, origins and first_seen (README, "Blame") and whether the case fails the run
OUTCOME = pytest.StashKey[list[tuple[Outcome, list[int] | None, Record, bool]]]()
DESCRIBED = pytest.StashKey[dict[str, Record]]()  # on the config: rule id -> reporting.describe(rule), for the run


def records_of(item: pytest.Item) -> list[Record]:
    """The JSON records of an item's cases, taken off the item ([] for an item whose cases have not run): each
    outcome, its rule described, its origins, the ids a baseline keeps and whether it fails the run."""
    finished = item.stash.get(OUTCOME, None)
    if finished is None:
        return []
    declared: Rule = item.function.rule  # type: ignore[attr-defined]
    del item.stash[OUTCOME]  # in the records now
    described = _described(item.config, declared)
    return [outcome.as_dict() | described | origins | {"fingerprint": ids, "fails_run": fails}
            for outcome, ids, origins, fails in finished]


def _described(config: pytest.Config, entry: Rule) -> Record:
    """``reporting.describe(entry)``, once per rule and run (each of its cases' records carries it)."""
    described = config.stash.setdefault(DESCRIBED, {})
    if entry.id not in described:
        described[entry.id] = reporting.describe(entry)
    return described[entry.id]


class Shapes:
    """What a run's ``FinishedRecord``s share: their keys' positions, one dict per order of keys, and equal small
    values held once (an empty list or dict, a short string such as a project label): most records of a run of
    many projects are passing cases, alike but for their project (docs/benchmarks.md, figure 6)."""

    def __init__(self) -> None:
        self.indexes: dict[tuple[str, ...], dict[str, int]] = {}
        self.values: dict[tuple[type, str], Any] = {}

    def index(self, keys: tuple[str, ...]) -> dict[str, int]:
        index = self.indexes.get(keys)
        if index is None:
            index = self.indexes[keys] = {key: position for position, key in enumerate(keys)}
        return index

    def value(self, value: Any) -> Any:
        """``value``, or an equal one seen before (records are read-only: nothing changes a shared value)."""
        kind = type(value)
        if (kind is list or kind is dict) and not value:
            return self.values.setdefault((kind, ""), value)
        if kind is str and len(value) <= 64:
            return self.values.setdefault((kind, value), value)
        return value


class FinishedRecord(Mapping[str, Any]):
    """A finished case's record, read-only: its values in one tuple, its keys in a dict shared by every record
    with the same keys, small values shared too (``Shapes``).  A run keeps every case's record to the end (the
    reports are written from them), and a record as a dict of its 33 keys is 1.2 KB; this one is 0.35 KB
    (docs/benchmarks.md, figure 6)."""

    __slots__ = ("_index", "_values")

    def __init__(self, record: Mapping[str, Any], shapes: Shapes):
        self._index = shapes.index(tuple(record))
        self._values = tuple(map(shapes.value, record.values()))

    def __getitem__(self, key: str) -> Any:
        return self._values[self._index[key]]

    def get(self, key: str, default: Any = None) -> Any:
        position = self._index.get(key)
        return default if position is None else self._values[position]

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"FinishedRecord({dict(self)!r})"


@dataclass(eq=False)  # a pytest plugin: hashed by identity
class Results:
    """The records of the cases reported so far, in report order (the controller's, under xdist)."""

    previous: Mapping[str, int] | None = None  # --compare: violations per rule/scope of the previous run
    records: list[Mapping[str, Any]] = field(default_factory=list)
    _reported: dict[str, tuple[int, pytest.TestReport]] = field(default_factory=dict)  # node id -> its call's
    _shapes: Shapes = field(default_factory=Shapes)  # what the FinishedRecords share

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> Generator[None, None, None]:
        """A test's records (its case's, or a test per rule's cases'), as its call report arrives (registered as
        a plugin by the invariants session).  Once every plugin has seen the test's teardown report (pytest-html
        reads the call's records then), each is kept as a ``FinishedRecord``, in the records and on the call
        report alike."""
        if report.when == "call":
            records = cases_of(report)
            if records:
                self._reported[report.nodeid] = (len(self.records), report)
            for record in records:
                record["delta"] = baseline.delta(record, self.previous)
                self.records.append(record)
        yield
        reported = self._reported.pop(report.nodeid, None) if report.when == "teardown" else None
        if reported is not None:
            position, call = reported
            finished = [FinishedRecord(record, self._shapes) for record in cases_of(call)]
            self.records[position:position + len(finished)] = finished
            if hasattr(call, "invariants"):
                call.invariants = finished  # type: ignore[attr-defined]
            else:
                call.invariant = finished[0]  # type: ignore[attr-defined]


def cases_of(report: pytest.TestReport) -> list[Any]:
    """The records a call report carries: its case's (``report.invariant``), or a test per rule's
    (``report.invariants``)."""
    if hasattr(report, "invariants"):
        return list(report.invariants)
    record = getattr(report, "invariant", None)
    return [record] if record else []


RESULTS = pytest.StashKey[Results]()


def results_of(config: pytest.Config) -> list[Mapping[str, Any]]:
    """The run's records so far ([] outside an invariants session)."""
    results = config.stash.get(RESULTS, None)
    return results.records if results is not None else []


def checked_anything(config: pytest.Config, exitstatus: int) -> bool:
    """False for a run that stopped before any case ran: a usage error (a bad ``-k``, a mistyped path) or no
    rule selected.  Such a run writes no report and claims nothing."""
    stopped = (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.NO_TESTS_COLLECTED)
    return bool(results_of(config)) or exitstatus not in stopped
