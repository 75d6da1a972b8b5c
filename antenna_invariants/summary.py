"""One row per rule, ranked: the terminal's table and ``reports/summary.md`` (GitHub's job summary, a merge
request comment).  Failing rules first, by severity then violations; then errors, warnings, baselined and
tolerated violations, repairs.  Both are capped: the reports have every case."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from antenna_invariants.blame import origin_summary
from antenna_invariants.docs import rule_order
from antenna_invariants.rules import Severity, Status

STANDINGS = ("FAILED", "ERROR", "WARN", "BASELINED", "TOLERATED", "REPAIRED")
TERMINAL_ROWS = 15  # rules in the terminal's table
FULL = 3  # failing cases printed in full by default
SUMMARY_ROWS = 30  # failing rules in summary.md
RISKS = {"low": "L", "medium": "M", "high": "H"}


def standing(o: Mapping[str, Any]) -> str | None:
    if o["fails_run"]:
        return "ERROR" if o["status"] == Status.ERROR else "FAILED"
    if o["status"] == Status.PASSED:
        return "TOLERATED" if o["violations"] else None
    return {Status.WARNED: "WARN", Status.BASELINED: "BASELINED", Status.REPAIRED: "REPAIRED"}.get(o["status"])


@dataclass
class RuleRow:
    rule: str
    title: str
    severity: str
    repair: str
    standing: str = "REPAIRED"
    violations: int = 0
    new: int | None = None
    cases: list[Mapping[str, Any]] = field(default_factory=list)

    @property
    def scopes(self) -> list[str]:
        return [o["project"] for o in self.cases]

    @property
    def ids(self) -> list[int]:
        return [pk for o in self.cases for pk in o["sample"]]


def rows(outcomes: Sequence[Mapping[str, Any]]) -> list[RuleRow]:
    """The rules with something to say, ranked."""
    by_rule: dict[str, RuleRow] = {}
    for o in outcomes:
        mark = standing(o)
        if mark is None:
            continue
        row = by_rule.get(o["rule"])
        if row is None:
            row = by_rule[o["rule"]] = RuleRow(o["rule"], o.get("title", ""), o["severity"], repair_text(o))
        row.standing = min(row.standing, mark, key=STANDINGS.index)
        row.violations += o["violations"]
        if o.get("new") is not None:
            row.new = (row.new or 0) + o["new"]
        row.cases.append(o)
    return sorted(by_rule.values(), key=lambda r: (STANDINGS.index(r.standing), r.severity != Severity.ERROR,
                                                   -r.violations, rule_order(r.rule)))


def repair_text(o: Mapping[str, Any]) -> str:
    risk = f", risk {RISKS[o['risk']]}" if o.get("risk") in RISKS else ""
    if not o.get("repairable"):
        return "no repair"
    return ("deletes rows" if o.get("deletes") else "repairable") + risk


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _ids(ids: list[int], shown: int = 5) -> str:
    return ", ".join(map(str, ids[:shown])) + (", …" if len(ids) > shown else "")


def terminal_table(
    terminal: pytest.TerminalReporter, outcomes: Sequence[Mapping[str, Any]], reports: Path
) -> list[RuleRow]:
    ranked = rows(outcomes)
    if not ranked:
        return ranked
    terminal.write_line(f"{'':9} {'rule':5} {'title':44} {'severity':8} {'violations':>10} {'scopes':>6}  "
                        f"{'repair':22} ids")
    for r in ranked[:TERMINAL_ROWS]:
        new = f" ({r.new} new)" if r.new is not None else ""
        terminal.write_line(
            f"{r.standing:9} {r.rule:5} {_cut(r.title, 44):44} {r.severity:8} {r.violations:>10} "
            f"{len(r.cases):>6}  {r.repair:22} {_ids(r.ids)}{new}",
            red=r.standing in ("FAILED", "ERROR"), yellow=r.standing in ("WARN", "BASELINED", "TOLERATED"),
        )
    if len(ranked) > TERMINAL_ROWS:
        terminal.write_line(f"… {len(ranked) - TERMINAL_ROWS} more rules: {reports / 'summary.md'}")
    return ranked


def first_failures(
    terminal: pytest.TerminalReporter, ranked: list[RuleRow], message: Callable[[Mapping[str, Any]], str], reports: Path
) -> None:
    """The first ``FULL`` failing cases in full (count, what to do, ids, SQL); where the others are."""
    failing = [(r, o) for r in ranked if r.standing in ("FAILED", "ERROR") for o in r.cases if o["fails_run"]]
    for r, o in failing[:FULL]:
        terminal.write_sep("_", f"{r.rule} {o['project']}")
        terminal.write_line(message(o))
    if len(failing) > FULL:
        terminal.write_line(
            f"{len(failing) - FULL} more failing cases in {reports / 'report.html'} and {reports / 'junit.xml'} "
            f"(-v or -rA prints every one here)"
        )


def markdown(outcomes: Sequence[Mapping[str, Any]], run: dict[str, Any], verdict: str) -> str:
    """summary.md: a heading with the verdict, one row per failing rule, then the rest in one line."""
    ranked = rows(outcomes)
    failing = [r for r in ranked if r.standing in ("FAILED", "ERROR")]
    baseline = any(r.new is not None for r in ranked)
    lines = [f"### Antenna invariants: {verdict}", "",
             f"`{run['database']['label']}` · {run['scope']} · {run['mode']}", ""]
    if failing:
        new = " new |" if baseline else ""
        attributed = any(o.get("attribution") for r in failing for o in r.cases)
        origin = " most likely origin |" if attributed else ""
        lines += [f"| rule | title | severity | violations |{new} projects | repairable |{origin}",
                  "|---|---|---|--:|" + ("--:|" if baseline else "") + "---|---|" + ("---|" if attributed else "")]
        for r in failing[:SUMMARY_ROWS]:
            scopes = ", ".join(r.scopes[:3]) + (f" +{len(r.scopes) - 3}" if len(r.scopes) > 3 else "")
            count = f"{r.violations}" if r.standing == "FAILED" else "could not run"
            cells = [f"**{r.rule}**", r.title, r.severity, count] + ([str(r.new or 0)] if baseline else [])
            cells += [scopes, r.repair] + ([origin_summary(r.cases)] if attributed else [])
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        if len(failing) > SUMMARY_ROWS:
            lines.append(f"\n_{len(failing) - SUMMARY_ROWS} more failing rules: see report.html and invariants.json._")
    rest = [r for r in ranked if r.standing not in ("FAILED", "ERROR")]
    for mark in STANDINGS[2:]:
        named = [f"{r.rule} ({r.violations})" for r in rest if r.standing == mark]
        if named:
            more = " …" if len(named) > SUMMARY_ROWS else ""
            lines.append(f"\n**{mark}**: " + ", ".join(named[:SUMMARY_ROWS]) + more)
    return "\n".join(lines) + "\n"
