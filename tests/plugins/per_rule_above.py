"""``-p plugins.per_rule_above``: lowers the case count beyond which ``--tests-per auto`` collects a test per
rule to ``INVARIANTS_PER_RULE_ABOVE`` (a self-test database has a few projects, not thousands)."""

import os

from antenna_invariants import session

session.PER_RULE_ABOVE = int(os.environ["INVARIANTS_PER_RULE_ABOVE"])
