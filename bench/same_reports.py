"""Do two runs' reports say the same, apart from timings?  For a change that must not touch what users see
(docs/benchmarks.md, figure 6): run ``pytest invariants --reports A > A/terminal.txt`` before and after it,
then ``python bench/same_reports.py A B``.  Timings, dates, host and the reports' own directory are blanked;
every other byte of terminal.txt, invariants.json, summary.md, junit.xml and report.html must match."""

from __future__ import annotations

import re
import sys
from pathlib import Path

FILES = ("terminal.txt", "invariants.json", "summary.md", "junit.xml", "report.html")
TIMINGS = [
    (r'"(started|finished)": "[^"]*"', r'"\1": T'),  # invariants.json's run
    (r'"duration": [0-9.e-]+', '"duration": T'),
    (r'(time|timestamp)="[^"]*"', r'\1="T"'),  # junit
    (r"\b(in|took) [0-9.:]+s?\b", r"\1 T"),  # pytest's last line, pytest-html's run count
    (r"[0-9]+ ms\b|[0-9]{2}:[0-9]{2}:[0-9]{2}", "T"),  # pytest-html's durations and clock
    (r"\b[0-9]{2}-[A-Z][a-z]{2}-[0-9]{4}\b", "D"),
    (r"\bstarted [0-9T:+-]+", "started T"),
    (r"=+ ([^=]*?) =+$", r"= \1 ="),  # pytest's separator lines, as wide as the paths in them
    (r"-+ ([^-].*?) -+$", r"- \1 -"),
]


def normalized(text: str, directory: Path) -> str:
    text = text.replace(str(directory), "REPORTS")
    for pattern, replacement in TIMINGS:
        text = re.sub(pattern, replacement, text, flags=re.M)
    return text


def main(a: Path, b: Path) -> int:
    differing = []
    for name in FILES:
        if not (a / name).exists() and not (b / name).exists():
            continue
        left = normalized((a / name).read_text(encoding="utf-8"), a)
        right = normalized((b / name).read_text(encoding="utf-8"), b)
        if left != right:
            pairs = enumerate(zip(left, right, strict=False))
            first = next((i for i, (x, y) in pairs if x != y), min(len(left), len(right)))
            start = max(0, first - 80)
            differing.append(f"{name}: differs at {first}: {left[start:first + 80]!r} / {right[start:first + 80]!r}")
        else:
            print(f"{name}: same ({len(left)} characters)")
    print("\n".join(differing))
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
