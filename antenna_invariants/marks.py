"""The marks of an invariants case, which ``-m`` selects by: its domain, its rule id, its severity, whether it
repairs and at what risk, whether its table is global; declared for ``--strict-markers`` and ``--markers``."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from antenna_invariants.rules import Rule, Severity

MARKERS = {
    "error": "rules of severity error (they fail the run)",
    "warn": "rules of severity warn (WARN; they fail only under --strict)",
    "repairable": "rules that have a repair",
    "risk_low": "rules whose repair is a pure recompute",
    "risk_medium": "rules whose repair changes what users see",
    "risk_high": "rules whose repair deletes rows",
    "global": "rules on tables without a project (taxa): left out of a --project run unless -m global",
}
RISK_MARKS = {"L": "risk_low", "M": "risk_medium", "H": "risk_high"}


def declare(config: pytest.Config, rules: Mapping[str, Rule]) -> None:
    """Register every mark a case may carry: the domains, the rule ids and ``MARKERS``."""
    for domain in sorted({r.domain for r in rules.values()}):
        config.addinivalue_line("markers", f"{domain}: invariants of the {domain} domain")
    for entry in rules.values():
        config.addinivalue_line("markers", f"{entry.id}: {entry.doc[:80]}")
    for name, meaning in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")


def rule_marks(entry: Rule) -> list[pytest.MarkDecorator]:
    """The case's marks: domain, rule id, severity, repairability, risk, global; and the rule's xdist group
    (``--dist loadgroup`` sends all of a rule's cases to one worker)."""
    names: list[str | None] = [entry.domain, entry.id, Severity(entry.severity).value]
    names += ["repairable"] * (entry.repair_func is not None) + [RISK_MARKS.get(entry.risk)]
    names += ["global"] * entry.is_global
    return [getattr(pytest.mark, name) for name in names if name] + [pytest.mark.xdist_group(entry.id)]
