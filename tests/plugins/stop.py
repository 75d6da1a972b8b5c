"""A pytest plugin for the exit-code self-tests: ``INVARIANTS_STOP=interrupt`` presses Ctrl-C in the first case
(a KeyboardInterrupt while it runs); ``INVARIANTS_STOP=crash`` breaks a hook (an exception while pytest reports a
case: its internal error)."""

import os

STOP = os.environ["INVARIANTS_STOP"]


def pytest_runtest_call(item):
    if STOP == "interrupt":
        raise KeyboardInterrupt


def pytest_runtest_logreport(report):
    if STOP == "crash" and report.when == "call":
        raise RuntimeError("a bug in a hook")
