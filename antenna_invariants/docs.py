"""docs/invariants.md, generated from the rules themselves (``python -m antenna_invariants docs``)."""

from __future__ import annotations

import re
from pathlib import Path

from antenna_invariants.layout import CHECKOUT, load_rules
from antenna_invariants.rules import RULES

DOCS = CHECKOUT / "docs" / "invariants.md"
RISKS = {
    "L": "low: pure recompute", "M": "medium: changes what users see", "H": "high: deletes rows", "-": "report only",
}


def rule_order(rule_id: str) -> tuple[str, int, str]:
    found = re.fullmatch(r"([A-Z]+)(\d+)(\w*)", rule_id)
    if found is None:  # an id not shaped like D1 or K4b: after those, by name
        return "~", 0, rule_id
    letters, number, suffix = found.groups()
    return letters, int(number), suffix


def render() -> str:
    load_rules()
    lines = [
        "# Rule reference",
        "",
        "Generated from the rules' docstrings by `python -m antenna_invariants docs`; a self-test fails when",
        "this file is out of date.  Ids are those of the catalogue (antenna-data-model.md §8); J1–J4 are the job",
        "rules, which the catalogue lists without ids; B1, J5, JL1, T2, T3, TL1, C12, W1, X1 and X2 check failures",
        "Antenna's production has had (issue 16).  A rule with a `b` id is the other half of its namesake, split",
        "where the two halves differ in severity or repair.",
        "",
        "| id | domain | severity | what it means | repair | risk |",
        "|---|---|---|---|---|---|",
    ]
    for rule_id in sorted(RULES, key=rule_order):
        entry = RULES[rule_id]
        severity = entry.severity + (f" (tolerates {entry.error_if})" if entry.error_if else "")
        if entry.repair_func is not None:
            repair = "yes: " + " ".join((entry.repair_func.__doc__ or entry.repair_func.__name__).split())
        else:
            repair = "no" + (f": {entry.hint}" if entry.hint else "")
        anchor = f'<a id="{entry.id.lower()}"></a>{entry.id}'
        cells = [anchor, entry.domain, severity, entry.doc, repair, RISKS.get(entry.risk, entry.risk)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write(path: Path = DOCS) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    return str(path)
