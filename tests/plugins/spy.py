"""A pytest plugin for the self-tests: ``INVARIANTS_SPY=FILE`` appends, for every grouped check, the rule and
the scope labels it was asked for, one line each (the check itself runs unchanged)."""

import os

from antenna_invariants import rules

real_check_projects = rules.check_projects


def check_projects(entry, scopes, *args, **kwargs):
    with open(os.environ["INVARIANTS_SPY"], "a", encoding="utf-8") as spy:
        spy.write(f"{entry.id} {' '.join(s.label for s in scopes)}\n")
    return real_check_projects(entry, scopes, *args, **kwargs)


rules.check_projects = check_projects
