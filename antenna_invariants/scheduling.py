"""How xdist spreads an invariants run over its workers (``-n``): ``ByRule`` sends every case of a rule to one
worker, and the rules of a shared scan to one worker together; the plugin's ``pytest_xdist_make_scheduler``
returns it under xdist's default ``--dist load``.  Imported by that hook only: xdist is optional (the
self-tests' extra), and its scheduler brings execnet, which a run without ``-n`` does not load."""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

from antenna_invariants.rules import RULES
from antenna_invariants.shared import SCANS


class ByRule(LoadScopeScheduling):
    """xdist's ``loadscope`` with a rule (its test, without the project parameter) as the scope: the rule's first
    case checks all its projects in one statement, which would otherwise run on every worker that got one of
    its cases (docs/benchmarks.md, figure 4); the rules of a shared scan (antenna_invariants.shared) go to one
    worker together.  Each case also carries its rule's ``xdist_group`` mark, so ``--dist loadgroup`` groups
    the same way; it is not the default because pytest 9.2 broke it (the groups are silently ignored,
    pytest-dev/pytest-xdist#1386), and then this scheduler can retire."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        super().__init__(config, log)
        self.scans = {entry.name: f"shared scan: {SCANS[rule].name}" for rule, entry in RULES.items() if rule in SCANS}

    def _split_scope(self, nodeid: str) -> str:
        test = nodeid.split("[", 1)[0]  # the rule's test, without its project parameter
        return self.scans.get(test.rsplit("::", 1)[-1], test)  # the rules of a shared scan go together
