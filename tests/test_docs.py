"""docs/invariants.md is generated from the rules and must be current."""

from antenna_invariants.docs import DOCS, render
from antenna_invariants.rules import RULES


def test_rule_reference_is_up_to_date():
    assert DOCS.read_text(encoding="utf-8") == render(), "run: python -m antenna_invariants docs"


def test_every_rule_is_documented_with_a_sentence():
    render()
    for entry in RULES.values():
        assert entry.doc.endswith("."), f"{entry.id} needs a docstring that reads as a sentence"
        assert entry.name.startswith("test_"), entry.id
