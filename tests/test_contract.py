"""The self-test contract (tests/plugins/contract.py): one generic test walks the rule registry and fails, naming
the rule and what it lacks, when a rule has no planted-defect, near-miss or scope test, or no exact-and-idempotent
repair test although it repairs.  The tests declare what they cover with ``@pytest.mark.covers(rule, *kinds)``."""

import json
import os
import re
import subprocess
import sys

from plugins.contract import gaps

from antenna_invariants.connection import ROOT
from antenna_invariants.layout import load_rules
from antenna_invariants.rules import RULES, Rule

load_rules()


def collected_marks(tmp_path, *args: str) -> list[dict]:
    """The ``covers`` markers of the self-tests a ``pytest --collect-only`` of ``args`` finds (a subprocess: the
    whole tests/ directory, whichever part of it this session runs)."""
    out = tmp_path / "covers.json"
    env = {**os.environ, "INVARIANTS_CONTRACT": str(out), "PYTHONPATH": str(ROOT / "tests")}
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
               "-p", "plugins.contract"]
    done = subprocess.run([*command, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text())


def test_every_rule_has_a_planted_defect_a_near_miss_a_scope_and_a_repair_test(tmp_path):
    marks = collected_marks(tmp_path, "tests")

    problems = gaps(RULES.values(), marks)
    assert problems == [], "the self-test contract is not met:\n" + "\n".join(problems)
    assert {mark["args"][0] for mark in marks} == set(RULES)


def test_the_contract_names_the_rule_and_the_kind_a_missing_test_leaves_uncovered(tmp_path):
    marks = collected_marks(tmp_path, "tests/test_classifications_rules.py")
    c8_repair = sorted({m["test"] for m in marks if m["args"][0] == "C8" and "repair" in m["args"][1:]})
    assert c8_repair  # the contract holds for C8 here; take its repair tests away:
    deselect = [f"--deselect={test}" for test in c8_repair]
    deselected = collected_marks(tmp_path, "tests/test_classifications_rules.py", *deselect)
    classifications = [rule for rule in RULES.values() if rule.domain == "classifications"]

    assert set(gaps(classifications, deselected)) - set(gaps(classifications, marks)) == {
        "C8: no repair test (fixes exactly the violators, and a second repair fixes nothing)"}


def test_the_contract_requires_a_repair_test_only_of_a_rule_that_repairs_and_knows_every_name():
    plain = Rule("Z1", lambda rows: rows, "occurrences", "test")
    repairing = Rule("Z2", lambda rows: rows, "occurrences", "test")
    repairing.repair(lambda violators: 0)
    marks = [{"test": "t::a", "args": ["Z1", "planted", "near_miss", "scope"]},
             {"test": "t::b", "args": ["Z2", "planted", "near_miss"]},
             {"test": "t::c", "args": ["Z1", "repair"]},
             {"test": "t::d", "args": ["Z2", "nearmiss"]},
             {"test": "t::e", "args": ["Z9", "planted"]}]

    assert gaps([plain, repairing], marks) == [
        "Z1: has no repair, but t::c covers its repair",
        "Z2: t::d covers 'nearmiss', not one of planted, near_miss, scope, repair",
        "Z9: no such rule, but t::e covers it",
        "Z2: no scope test (rows of another scope are neither reported nor repaired)",
        "Z2: no repair test (fixes exactly the violators, and a second repair fixes nothing)",
    ]


def test_a_domain_has_one_name_for_its_rules_its_self_tests_and_its_scenarios():
    rules = {path.stem.removeprefix("test_") for path in (ROOT / "invariants").glob("test_*.py")}
    self_tests = {path.stem[len("test_"):-len("_rules")] for path in (ROOT / "tests").glob("test_*_rules.py")}
    scenarios = {path.stem for path in (ROOT / "fixtures" / "scenarios").glob("*.py")} - {"__init__"}

    assert self_tests == rules
    assert scenarios == rules
    assert {rule.domain for rule in RULES.values()} == rules


def test_every_self_test_contributing_names_as_a_guard_exists():
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = text[text.index("# Engine invariants you must not break"):]
    named = set(re.findall(r"\b(test_\w+)`", section))
    modules = set(re.findall(r"`(tests/test_\w+\.py)", section))
    defined = {name for path in (ROOT / "tests").glob("test_*.py")
               for name in re.findall(r"^def (test_\w+)\(", path.read_text(encoding="utf-8"), re.M)}

    assert len(named) > 15
    assert named - defined == set()
    assert {path for path in modules if not (ROOT / path).is_file()} == set()
