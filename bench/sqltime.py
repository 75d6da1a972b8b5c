"""A pytest plugin for the bench (``-p sqltime``, bench/ on PYTHONPATH): times every statement a run sends
through Django, so that figure 6 can tell the time a run spends waiting for PostgreSQL from the time it
spends in Python (docs/benchmarks.md).  ``TOTAL`` holds the count and the seconds; ``run.py`` reads them once
``pytest.main`` returns.  With ``SQLTIME_LOG=FILE`` it also writes each statement's seconds, its test and
the start of its SQL to FILE (JSON, slowest first): where a run's database time goes, case by case."""

from __future__ import annotations

import json
import os
import time

TOTAL = {"statements": 0, "seconds": 0.0}
STATEMENTS: list[tuple[float, str, str]] = []  # (seconds, test node id, SQL's start), with SQLTIME_LOG only
CURRENT = {"test": "(outside a test)"}


def timed(execute, sql, params, many, context):
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        seconds = time.perf_counter() - started
        TOTAL["statements"] += 1
        TOTAL["seconds"] += seconds
        if os.environ.get("SQLTIME_LOG"):
            STATEMENTS.append((seconds, CURRENT["test"], " ".join(sql.split())[:400]))


def pytest_sessionstart(session):
    from django.db import connections

    connections["default"].execute_wrappers.append(timed)



def pytest_runtest_setup(item):
    CURRENT["test"] = item.nodeid


def pytest_sessionfinish(session):
    path = os.environ.get("SQLTIME_LOG")
    if path:
        slowest = sorted(STATEMENTS, reverse=True)
        with open(path, "w", encoding="utf-8") as out:
            json.dump({"total": TOTAL, "statements": [{"seconds": round(s, 4), "test": t, "sql": q}
                                                      for s, t, q in slowest]}, out, indent=1)
