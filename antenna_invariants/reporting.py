"""Outcomes out: failure messages, the terminal summary, reports/invariants.json, HTML columns and extras."""

from __future__ import annotations

import html
import json
from pathlib import Path

from antenna_invariants.followups import followups

OUTCOMES: list[dict] = []


def default_report_paths(config, reports: Path):
    """JUnit XML and HTML go to the reports directory unless the user chose other paths."""
    if getattr(config.option, "xmlpath", None) is None:
        config.option.xmlpath = str(reports / "junit.xml")
    if hasattr(config.option, "htmlpath") and config.option.htmlpath is None:
        config.option.htmlpath = str(reports / "report.html")
        config.option.self_contained_html = True


def failure_message(entry, outcome) -> str:
    shown = ", ".join(map(str, outcome.sample))
    more = f" (first {len(outcome.sample)})" if len(outcome.sample) < outcome.violations else ""
    lines = [f"{entry.id} {entry.name}: {outcome.violations} violating {entry.table} of {outcome.checked} checked"]
    if entry.error_if:
        lines[0] += f" (tolerated: {entry.error_if})"
    if outcome.remaining is not None:
        lines.append(f"repair: {outcome.fixed} fixed, {outcome.unfixable} unfixable, {outcome.remaining} remaining")
        if outcome.beyond_limit:
            lines[-1] += f" ({outcome.beyond_limit} left alone by --repair-limit)"
    elif entry.repair_func is None:
        lines.append(f"no automatic repair: {entry.hint or 'investigate the rows below'}")
    else:
        lines.append("a repair exists: rerun with --repair and a scope")
    if outcome.journal:
        lines.append(f"journal: {outcome.journal} ({journaled(outcome.journaled)})")
    lines.append(f"ids{more}: {shown}")
    lines.append(f"reproduce: {outcome.sql};")
    return "\n".join(lines)


def journaled(tally: dict[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in tally.items())


def attach_html_extras(report, outcome):
    try:
        import pytest_html
    except ImportError:
        return
    if outcome.violations:
        report.extras = getattr(report, "extras", []) + [
            pytest_html.extras.text(", ".join(map(str, outcome.sample)), name="sample ids"),
            pytest_html.extras.text(outcome.sql, name="SQL"),
        ]


def totals() -> dict[str, int]:
    keys = ("checked", "violations", "fixed", "unfixable")
    return {k: sum(o.get(k) or 0 for o in OUTCOMES) for k in keys}


def terminal_summary(terminal, reports: Path):
    interesting = [o for o in OUTCOMES if o["status"] not in ("passed", "skipped")]
    terminal.section("antenna invariants")
    for o in interesting:
        fixed = f"  fixed {o['fixed']}, unfixable {o['unfixable']}" if o["remaining"] is not None else ""
        if o.get("journaled"):
            fixed += f"  (journal: {journaled(o['journaled'])})"
        terminal.write_line(f"{o['status'].upper():9} {o['rule']:4} {o['project']:12} {o['violations']:>8} violating / {o['checked']} checked{fixed}")
    t = totals()
    terminal.write_line(
        f"rules x scopes: {len(OUTCOMES)}; rows checked {t['checked']}, violating {t['violations']}, "
        f"fixed {t['fixed']}, unfixable {t['unfixable']}"
    )
    terminal.write_line(f"reports: {reports / 'invariants.json'}")
    todo = followups(OUTCOMES)
    if todo:
        terminal.section("after this repair, in Antenna")
        for line in todo:
            terminal.write_line(f"- {line}")


def write_json(reports: Path, description: str):
    reports.mkdir(parents=True, exist_ok=True)
    document = {
        "database": description,
        "totals": totals(),
        "results": sorted(OUTCOMES, key=lambda o: (o["rule"], o["project"])),
    }
    (reports / "invariants.json").write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")


class HtmlColumns:
    """pytest-html hooks (registered only when pytest-html is installed): a title and the rule's numbers."""

    def pytest_html_report_title(self, report):
        report.title = "Antenna invariants"

    def pytest_html_results_table_header(self, cells):
        cells.insert(2, "<th>Status</th>")
        cells.insert(3, "<th>Violations</th>")
        cells.insert(4, "<th>Fixed</th>")

    def pytest_html_results_table_row(self, report, cells):
        data = getattr(report, "invariant", None) or {}
        cells.insert(2, f"<td>{html.escape(str(data.get('status', report.outcome)).upper())}</td>")
        cells.insert(3, f"<td>{data.get('violations', '')}</td>")
        cells.insert(4, f"<td>{data.get('fixed', '')}</td>")
