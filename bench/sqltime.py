"""A pytest plugin for the bench (``-p sqltime``, bench/ on PYTHONPATH): times every statement a run sends
through Django, so that figure 6 can tell the time a run spends waiting for PostgreSQL from the time it
spends in Python (docs/benchmarks.md).  ``TOTAL`` holds the count and the seconds; ``run.py`` reads them once
``pytest.main`` returns."""

from __future__ import annotations

import time

TOTAL = {"statements": 0, "seconds": 0.0}


def timed(execute, sql, params, many, context):
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        TOTAL["statements"] += 1
        TOTAL["seconds"] += time.perf_counter() - started


def pytest_sessionstart(session):
    from django.db import connections

    connections["default"].execute_wrappers.append(timed)

