"""The run's results on ``config.stash`` (typed keys, nothing module-level): each case's outcome on its item,
the records the controller collects for the reports, and what ``--compare`` compares them with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from antenna_invariants import baseline, reporting
from antenna_invariants.check import Outcome
from antenna_invariants.rules import Rule

Record = dict[str, Any]  # one case's JSON record (docs/reports.md)

OUTCOME = pytest.StashKey[Outcome]()  # on the item: what its case produced
FINGERPRINT = pytest.StashKey["list[int] | None"]()  # on the item: the ids a baseline keeps
ORIGINS = pytest.StashKey[Record]()  # on the item: attribution, origins and first_seen (README, "Blame")
DESCRIBED = pytest.StashKey[dict[str, Record]]()  # on the config: rule id -> reporting.describe(rule), for the run


def record_of(item: pytest.Item) -> Record | None:
    """The JSON record of a case's item (None for an item whose case has not run): its outcome, its rule
    described, its origins and the ids a baseline keeps."""
    outcome = item.stash.get(OUTCOME, None)
    if outcome is None:
        return None
    declared: Rule = item.function.rule  # type: ignore[attr-defined]
    fingerprint = {"fingerprint": item.stash.get(FINGERPRINT, None)}
    return outcome.as_dict() | _described(item.config, declared) | item.stash.get(ORIGINS, {}) | fingerprint


def _described(config: pytest.Config, entry: Rule) -> Record:
    """``reporting.describe(entry)``, once per rule and run (each of its cases' records carries it)."""
    described = config.stash.setdefault(DESCRIBED, {})
    if entry.id not in described:
        described[entry.id] = reporting.describe(entry)
    return described[entry.id]


@dataclass(eq=False)  # a pytest plugin: hashed by identity
class Results:
    """The records of the cases reported so far, in report order (the controller's, under xdist)."""

    previous: Mapping[str, int] | None = None  # --compare: violations per rule/scope of the previous run
    records: list[Record] = field(default_factory=list)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """A case's record, as its report arrives (registered as a plugin by the invariants session)."""
        record: Record | None = getattr(report, "invariant", None)
        if report.when == "call" and record:
            record["fails_run"] = report.failed
            record["delta"] = baseline.delta(record, self.previous)
            self.records.append(record)


RESULTS = pytest.StashKey[Results]()


def results_of(config: pytest.Config) -> list[Record]:
    """The run's records so far ([] outside an invariants session)."""
    results = config.stash.get(RESULTS, None)
    return results.records if results is not None else []


def checked_anything(config: pytest.Config, exitstatus: int) -> bool:
    """False for a run that stopped before any case ran: a usage error (a bad ``-k``, a mistyped path) or no
    rule selected.  Such a run writes no report and claims nothing."""
    stopped = (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.NO_TESTS_COLLECTED)
    return bool(results_of(config)) or exitstatus not in stopped
