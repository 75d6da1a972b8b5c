"""The self-test contract: every rule has a planted-defect test, a near-miss test and a scope test, and a rule
with a repair an exact-and-idempotent repair test.  A self-test says what it covers with a marker:

    @pytest.mark.covers("C7", "planted", "near_miss")
    def test_c7_flags_timestamps_that_differ_null_safely(invariants): ...

    @for_each_rule(PLANTED, "scope")                    # one case per rule, each marked for its own rule
    def test_rule_is_scoped(invariants, rule_id, plant): ...

``tests/test_contract.py`` collects the self-tests with this module as a plugin (``-p plugins.contract``,
``INVARIANTS_CONTRACT=FILE``: the markers of the collected tests are written there as JSON) and walks the rule
registry with ``gaps``.
"""

import json
import os
from collections import defaultdict

import pytest

KINDS = {
    "planted": "planted-defect test (plants the defect, asserts exactly its violators)",
    "near_miss": "near-miss test (rows that almost violate are not flagged)",
    "scope": "scope test (rows of another scope are neither reported nor repaired)",
    "repair": "repair test (fixes exactly the violators, and a second repair fixes nothing)",
}


def covers(rule_id: str, *kinds: str) -> pytest.MarkDecorator:
    return pytest.mark.covers(rule_id, *kinds)


def for_each_rule(plants: dict, *kinds: str) -> pytest.MarkDecorator:
    """Parametrize a test as ``rule_id, plant`` over ``plants`` (rule id -> ``plant(deployment)``, which builds
    one defect and returns its violating rows), each case covering ``kinds`` (if any) of its own rule."""
    cases = [pytest.param(rule_id, plant, id=rule_id, marks=[covers(rule_id, *kinds)] if kinds else [])
             for rule_id, plant in plants.items()]
    return pytest.mark.parametrize(("rule_id", "plant"), cases)


def required(rule) -> list[str]:
    return [kind for kind in KINDS if kind != "repair" or rule.repair_func is not None]


def coverage(marks: list[dict]) -> dict[str, dict[str, list[str]]]:
    """``{rule: {kind: [test ids]}}`` from the collected markers (``{"test", "args"}`` each)."""
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for mark in marks:
        rule_id, *kinds = mark["args"] or [""]
        for kind in kinds or [""]:
            found[rule_id][kind].append(mark["test"])
    return found


def gaps(rules, marks: list[dict]) -> list[str]:
    """Every way the collected self-tests fall short of the contract, one line each, naming the rule."""
    found = coverage(marks)
    known = {rule.id: rule for rule in rules}
    problems = []
    for rule_id, kinds in sorted(found.items()):
        for kind, tests in sorted(kinds.items()):
            if rule_id not in known:
                problems.append(f"{rule_id or '(no rule)'}: no such rule, but {tests[0]} covers it")
            elif kind not in KINDS:
                problems.append(f"{rule_id}: {tests[0]} covers {kind or '(no kind)'!r}, not one of {', '.join(KINDS)}")
            elif kind == "repair" and known[rule_id].repair_func is None:
                problems.append(f"{rule_id}: has no repair, but {tests[0]} covers its repair")
    for rule in rules:
        problems += [f"{rule.id}: no {KINDS[kind]}" for kind in required(rule) if not found.get(rule.id, {}).get(kind)]
    return problems


def pytest_collection_finish(session: pytest.Session) -> None:
    marks = [{"test": item.nodeid, "args": list(mark.args)}
             for item in session.items for mark in item.iter_markers("covers")]
    with open(os.environ["INVARIANTS_CONTRACT"], "w", encoding="utf-8") as out:
        json.dump(marks, out)
