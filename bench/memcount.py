"""A pytest plugin for the bench (``-p memcount``, bench/ on PYTHONPATH): what a run holds per case.

At the start of ``pytest_sessionfinish`` (before any report is written) it walks what pytest and its plugins
keep to the end of the session, holder by holder (the items, the terminal's reports, pytest-html's, JUnit's,
our records, the items' stash), and counts the bytes each holds that no earlier holder already counted
(``sys.getsizeof`` of every object reached, shared objects once); plus VmRSS at checkpoints of the run, and
with ``PYTHONTRACEMALLOC`` set, the top allocation sites of what is alive at that moment.  The findings go to
``$MEMCOUNT_OUT`` (JSON) and a short table to stderr; docs/benchmarks.md, figure 6, quotes them.

    PYTHONPATH=bench pytest invariants -p memcount ...          # MEMCOUNT_OUT=/tmp/mem.json
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
import tracemalloc
import types
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest

CHECKPOINTS: list[tuple[str, int, int]] = []  # (where, VmRSS KB, VmHWM KB)
PHASES: dict[str, int] = {}  # phase -> the highest VmRSS (KB) a sampling thread saw during it
_phase = ["start"]
_seen_teardowns = 0
_planned = 0


def _status() -> tuple[int, int]:
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status.read().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def checkpoint(where: str, phase: str | None = None) -> None:
    CHECKPOINTS.append((where, *_status()))
    if phase is not None:
        _phase[0] = phase


def _sample() -> None:
    while True:
        rss = _status()[0]
        PHASES[_phase[0]] = max(PHASES.get(_phase[0], 0), rss)
        time.sleep(0.02)


def _phased(module: Any, name: str, phase: str, after: str) -> None:
    """``module.name`` runs in phase ``phase``; ``after`` once it returns."""
    original = getattr(module, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        checkpoint(f"{phase}: start", phase)
        try:
            return original(*args, **kwargs)
        finally:
            checkpoint(f"{phase}: end", after)

    setattr(module, name, wrapped)


def pytest_configure(config: pytest.Config) -> None:
    checkpoint("configure", "collection")
    threading.Thread(target=_sample, daemon=True).start()
    try:
        from antenna_invariants import junit, reporting, session
    except ImportError:
        return
    _phased(session.Session, "rule_records", "ours: the rules' records", "ours: json and summary")
    _phased(reporting, "write_summary", "ours: summary.md", "pytest: JUnit, then pytest-html")
    _phased(junit, "reshape", "ours: junit.reshape", "after the reports")


def pytest_collection_finish(session: pytest.Session) -> None:
    global _planned
    _planned = len(session.items)
    gc.collect()
    checkpoint(f"collected {_planned} items", "running the cases")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    global _seen_teardowns
    if report.when == "teardown":
        _seen_teardowns += 1
        if _planned and _seen_teardowns % max(1, _planned // 4) == 0:
            checkpoint(f"{_seen_teardowns} cases run")


STOP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.CodeType,
        types.FrameType, types.TracebackType, pytest.Config, pytest.Session, pytest.Collector)


def _walk(roots: Iterable[Any], seen: set[int], stop: tuple[type, ...]) -> tuple[int, Counter, Counter]:
    """Bytes of everything reachable from ``roots`` not yet in ``seen`` (stopping at shared machinery)."""
    total, sizes, counts = 0, Counter(), Counter()
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        if isinstance(obj, stop):  # a finalized JUnit reporter keeps its element in a lambda's closure
            if isinstance(obj, types.FunctionType) and obj.__name__ == "<lambda>" and obj.__closure__:
                seen.add(id(obj))
                stack.extend(cell.cell_contents for cell in obj.__closure__)
            continue
        seen.add(id(obj))
        size = sys.getsizeof(obj)
        name = type(obj).__qualname__
        total += size
        sizes[name] += size
        counts[name] += 1
        stack.extend(gc.get_referents(obj))
    return total, sizes, counts


def holders(session: pytest.Session) -> list[tuple[str, list[Any]]]:
    """What keeps per-case data to the end of the session, in the order it is attributed."""
    config = session.config
    found: list[tuple[str, list[Any]]] = []
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        calls = [r for k, v in terminal.stats.items() if k for r in v if getattr(r, "when", None) == "call"]
        found.append(("terminal: call reports (passed)", [r for r in calls if r.passed]))
        found.append(("terminal: call reports (not passed)", [r for r in calls if not r.passed]))
        found.append(("terminal: reports in stats (setup, teardown)", [terminal.stats.get("", [])]))
    from _pytest.junitxml import xml_key

    xml = config.stash.get(xml_key, None)
    if xml is not None:
        found.append(("junitxml: node reporters", [xml.node_reporters_ordered, xml.node_reporters]))
    html = [p for p in config.pluginmanager.get_plugins() if type(p).__module__.startswith("pytest_html.")
            and hasattr(p, "_reports")]
    for plugin in html:
        found.append(("pytest-html: _reports", [plugin._reports]))
        found.append(("pytest-html: report data", [plugin._report._data]))
    ours = config.pluginmanager.get_plugin("antenna-invariants-results")
    if ours is not None:
        found.append(("antenna-invariants: records", [ours.records]))
    found.append(("items' stash", [item.stash for item in session.items]))
    found.append(("items (nodes, callspec, keywords, markers)", list(session.items)))
    return found


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> Any:
    gc.collect()
    checkpoint("sessionfinish (before the reports)", "memcount's walk")
    measure(session)
    checkpoint("memcount's walk done", "ours: json and summary")
    return (yield)


def measure(session: pytest.Session) -> None:
    cases = max(1, len(session.items))
    seen: set[int] = set()
    # the shared machinery the walk stops at, whatever its type
    seen.update(id(o) for o in (session, session.config, session.config.pluginmanager))
    rows = []
    for name, roots in holders(session):
        total, sizes, counts = _walk(roots, seen, STOP)
        rows.append({"holder": name, "bytes": total, "per_case": round(total / cases),
                     "top": [[t, s, counts[t]] for t, s in sizes.most_common(8)]})
    found: dict[str, Any] = {"cases": cases, "holders": rows}
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        found["tracemalloc_total"] = sum(s.size for s in snapshot.statistics("filename"))
        found["tracemalloc_top"] = [[str(s.traceback[0]), s.size, s.count] for s in snapshot.statistics("lineno")[:40]]
    session.config.stash[FOUND] = found


FOUND = pytest.StashKey[dict[str, Any]]()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    checkpoint("unconfigure (reports written)")
    found = config.stash.get(FOUND, {})
    found["checkpoints"] = CHECKPOINTS
    found["phase_peaks_kb"] = PHASES
    out = os.environ.get("MEMCOUNT_OUT")
    if out:
        with open(out, "w") as f:
            json.dump(found, f, indent=1)
    cases = found.get("cases", 1)
    lines = [f"memcount: {cases} items"]
    for row in found.get("holders", []):
        top = ", ".join(f"{t} {s // cases}" for t, s, _ in row["top"][:5])
        lines.append(f"  {row['holder']:48} {row['bytes'] / 1e6:8.1f} MB {row['per_case']:6} B/case  ({top})")
    for where, rss, hwm in CHECKPOINTS:
        lines.append(f"  {where:48} VmRSS {rss // 1024:5} MB  VmHWM {hwm // 1024:5} MB")
    for phase, peak in PHASES.items():
        lines.append(f"  peak during {phase:36} VmRSS {peak // 1024:5} MB")
    sys.stderr.write("\n".join(lines) + "\n")
