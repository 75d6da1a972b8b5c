"""The run's results on ``config.stash`` (typed keys, nothing module-level): each case's outcome on its item,
the records the controller collects for the reports, and what ``--compare`` compares them with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from antenna_invariants import baseline
from antenna_invariants.check import Outcome

Record = dict[str, Any]  # one case's JSON record (docs/reports.md)

OUTCOME = pytest.StashKey[Outcome]()  # on the item: what its case produced
FINGERPRINT = pytest.StashKey["list[int] | None"]()  # on the item: the ids a baseline keeps
ORIGINS = pytest.StashKey[Record]()  # on the item: attribution, origins and first_seen (README, "Blame")


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
