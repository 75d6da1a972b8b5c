"""A pytest plugin for replica tests: ``INVARIANTS_RECOVERY_CONFLICT=RULE:n`` makes PostgreSQL cancel the first
n checks of RULE the way a hot standby does when replay conflicts with a query: SQLSTATE 40001
(serialization_failure), "canceling statement due to conflict with recovery".  The error is raised by the
server (a ``RAISE`` in a ``DO`` block inside the check's read-only transaction), not faked in Python.
"""

import os

from django.db import connection

from antenna_invariants import check
from plugins import before_grouped_checks

RULE, _, TIMES = os.environ["INVARIANTS_RECOVERY_CONFLICT"].partition(":")
CANCEL = """DO $$ BEGIN RAISE EXCEPTION 'canceling statement due to conflict with recovery'
USING ERRCODE = 'serialization_failure',
      DETAIL = 'User query might have needed to see row versions that must be removed.';
END $$"""
cancelled = 0


def cancel(entry, scopes):
    global cancelled
    if entry.id == RULE and cancelled < int(TIMES):
        cancelled += 1
        with check.read_only(), connection.cursor() as cursor:
            cursor.execute(CANCEL)


before_grouped_checks(cancel)
