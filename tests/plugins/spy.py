"""A pytest plugin for the self-tests: ``INVARIANTS_SPY=FILE`` appends, for every grouped check, the rule and
the scope labels it was asked for, one line each (the check itself runs unchanged)."""

import os

from plugins import before_grouped_checks


def record(entry, scopes):
    with open(os.environ["INVARIANTS_SPY"], "a", encoding="utf-8") as spy:
        spy.write(f"{entry.id} {' '.join(s.label for s in scopes)}\n")


before_grouped_checks(record)
