"""The JUnit file, reshaped after pytest wrote it, so that a CI dashboard shows what happened (docs/reports.md).

pytest's own JUnit knows passed, failed and skipped.  An invariants case has more outcomes; this is the mapping:

| status | JUnit |
|---|---|
| failed (and warned under ``--strict``) | ``<failure message="12 violating occurrences of 5300 checked: D1 …">`` |
| error (could not run), timed out | ``<error type="error" | "timeout">`` |
| warned, baselined, tolerated (within ``error_if``/``warn_if``) | ``<skipped type="warned" …>`` etc.: ``WARN: …`` |
| repaired | passed, ``<system-out>REPAIRED: …</system-out>`` |
| passed (no violation) | passed |

Every case with violations carries the details (what to do, ids, SQL) in ``system-out``.  The suite's counts
(``failures``, ``errors``, ``skipped``) are recounted from the testcases, and the run's facts (database, scope,
mode, provenance) become the suite's properties.  The default family, ``xunit2``,
validates against Jenkins' junit-10 schema; ``-o junit_family=xunit1`` adds ``file`` and ``line`` (the rule's
``def`` line, for annotations) and per-testcase properties, which junit-10 does not allow.
"""

from __future__ import annotations

import re
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO

from antenna_invariants.rules import Rule, Status

CASE = re.compile(r"\[(?P<rule>[^\]-]+)-(?P<project>[^\]]+)\]$")
PLACEHOLDER = "antenna-invariants: the cases of test "  # where a test per rule's cases go, while they are written
RULE_TEST = re.compile(r"\[(?P<rule>[^\]-]+)\]$")  # a test per rule (--tests-per rule): test_...[D1]
PROPERTIES = ("rule", "project", "status", "violations", "checked", "fixed", "unfixable", "changed_under_repair",
              "baseline", "new")  # xunit1: a testcase's properties, when set
Verdict = Callable[[Mapping[str, Any]], "tuple[str, str] | None"]  # a case's ("fail" | "error" | "skip", text)
VISIBLE = {"warned": "WARN", "baselined": "BASELINED", "tolerated": "TOLERATED"}
NOT_XML = re.compile("[^\u0009\u000A\u000D\u0020-\u007E\u0080-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")  # as pytest's


def kind(record: Mapping[str, Any]) -> str:
    """The JUnit outcome of a record: failure, error, timeout, warned, baselined, tolerated, repaired, passed."""
    status: str = record["status"]
    if status == Status.ERROR:
        return "timeout" if record.get("message", "").startswith("timed out") else "error"
    if record.get("fails_run"):
        return "failure"
    if status == Status.PASSED and record.get("violations"):
        return "tolerated"
    return status


def reshape(
    path: Path,
    records: Sequence[Mapping[str, Any]],
    rules: dict[str, Rule],
    family: str,
    details: Callable[[Mapping[str, Any]], str],
    properties: Mapping[str, str],
    verdict: Verdict,
) -> None:
    """Rewrite ``path`` (pytest's JUnit) by the mapping above; ``details(record)`` is a case's full text,
    ``properties`` the suite's.  A test per rule becomes one testcase per case it covered, named and shaped as
    that case's own test would have been (``verdict(record)``: what its test would have raised); its cases are
    serialized one by one into a spool and written in its place (``_write``), never all in the tree at once."""
    tree = ET.parse(path)
    by_case = {(r["rule"], r["project"]): r for r in records}
    by_rule: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_rule.setdefault(r["rule"], []).append(r)
    with tempfile.TemporaryFile() as spool:
        expanded: list[tuple[int, int]] = []  # (start, end) in the spool, by the placeholder's number
        for suite in tree.getroot().iter("testsuite"):
            _suite_properties(suite, properties)
            counts = Counter[str]()  # the suite's testcases and their outcomes, recounted
            for case in suite.findall("testcase"):
                whole = RULE_TEST.search(case.get("name", ""))
                if whole is not None and whole["rule"] in by_rule:
                    begin = spool.tell()
                    for record in by_rule[whole["rule"]]:
                        one = _case_of(case, whole, record, family, verdict(record))
                        _reshape_case(one, record, rules[record["rule"]], family, details(record))
                        counts.update(_outcomes(one))
                        spool.write(ET.tostring(one, encoding="unicode").encode("utf-8"))
                    suite.insert(list(suite).index(case), ET.Comment(f"{PLACEHOLDER}{len(expanded)}"))
                    suite.remove(case)
                    expanded.append((begin, spool.tell()))
                    continue
                match = CASE.search(case.get("name", ""))
                found = by_case.get((match["rule"], match["project"])) if match else None
                if found is not None:
                    _reshape_case(case, found, rules[found["rule"]], family, details(found))
                counts.update(_outcomes(case))
            for outcome in ("failure", "error", "skipped"):
                suite.set(f"{outcome}s" if outcome != "skipped" else "skipped", str(counts[outcome]))
            suite.set("tests", str(counts["tests"]))
        _write(path, tree.getroot(), spool, expanded)


def _outcomes(case: ET.Element) -> list[str]:
    """What a testcase counts for in its suite: a test, and its failure, error or skip."""
    return ["tests", *(outcome for outcome in ("failure", "error", "skipped") if case.find(outcome) is not None)]


def _write(path: Path, root: ET.Element, spool: BinaryIO, expanded: list[tuple[int, int]]) -> None:
    """The tree, streamed as ``ElementTree.write`` writes it (a run of one test per case holds no second copy
    of its tens of thousands of testcases), each placeholder replaced by its test per rule's cases from the
    spool (docs/benchmarks.md, figure 6)."""
    placeholder = re.compile(f"<!--{re.escape(PLACEHOLDER)}([0-9]+)-->")

    def write(text: str) -> None:  # ElementTree writes a comment in one call: a placeholder becomes its cases
        found = placeholder.fullmatch(text)
        if found is None:
            out.write(text.encode("utf-8"))
            return
        begin, end = expanded[int(found[1])]
        spool.seek(begin)
        while begin < end:
            chunk = spool.read(min(1 << 20, end - begin))
            out.write(chunk)
            begin += len(chunk)

    with path.open("wb") as out:
        out.write(b"<?xml version='1.0' encoding='utf-8'?>\n")  # as ElementTree.write(encoding="utf-8") does
        ET.ElementTree(root).write(SimpleNamespace(write=write), encoding="unicode")


def _suite_properties(suite: ET.Element, properties: Mapping[str, str]) -> None:
    """The run's facts as the suite's first properties, where pytest writes its suite properties (before those
    a test records with ``record_testsuite_property``)."""
    if not properties:
        return
    element = suite.find("properties")
    if element is None:
        element = ET.Element("properties")
        suite.insert(0, element)
    for index, (name, value) in enumerate(properties.items()):
        escaped = visible(str(value))
        element.insert(index, ET.Element("property", name=name, value=escaped))


def _case_of(test: ET.Element, name: re.Match[str], record: Mapping[str, Any], family: str,
              verdict: tuple[str, str] | None) -> ET.Element:
    """One case of a test per rule, as pytest writes a test of its own: its node id's name, its duration, its
    properties (xunit1) and what it raised (a failure, or a skip)."""
    label = test.get("name", "")[:name.start()] + f"[{record['rule']}-{record['project']}]"
    case = ET.Element("testcase", {**test.attrib, "name": label, "time": f"{record['duration']:.3f}"})
    if family == "xunit1":
        element = ET.SubElement(case, "properties")
        for key in PROPERTIES:
            if record.get(key) is not None:
                ET.SubElement(element, "property", name=key, value=str(record[key]))
    if verdict is not None:
        kind, text = verdict
        tag = "skipped" if kind == "skip" else "failure"
        element = ET.SubElement(case, tag, {"type": "pytest.skip"} if kind == "skip" else {})
        element.set("message", visible(text.split("\n", 1)[0]))
        element.text = visible(text)
    return case


def visible(text: str) -> str:
    """``text`` with the characters XML cannot hold shown as ``#x1B``, as pytest writes them."""
    return NOT_XML.sub(lambda m: f"#x{ord(m.group()):0{2 if ord(m.group()) <= 0xFF else 4}X}", text)


def _reshape_case(case: ET.Element, record: Mapping[str, Any], entry: Rule, family: str, text: str) -> None:
    outcome = kind(record)
    if family == "xunit1":
        case.set("line", str(entry.def_line))
    else:
        for properties in case.findall("properties"):
            case.remove(properties)
    for skipped in case.findall("skipped"):
        if skipped.get("type") == "pytest.skip":  # the reason, not the line of the engine that skipped
            skipped.text = skipped.get("message")
    if outcome in ("error", "timeout"):
        for element in case.findall("failure"):
            element.tag = "error"
            element.set("type", outcome)
    elif outcome in VISIBLE and case.find("skipped") is None:
        first = text.split("\n", 1)[0]
        ET.SubElement(case, "skipped", type=outcome, message=f"{VISIBLE[outcome]}: {first}")
    elif outcome == "repaired":
        text = f"REPAIRED: {text}"
    if record.get("violations") or outcome == "repaired":
        for element in case.findall("system-out"):
            case.remove(element)
        ET.SubElement(case, "system-out").text = text
