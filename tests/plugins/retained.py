"""A pytest plugin for the self-tests: ``INVARIANTS_RETAINED=FILE`` writes, once every case has run and before
any report is written, what the run keeps of its cases to the end of the session (JSON), so that a self-test
can hold the run to keeping each case small (docs/benchmarks.md, figure 6)."""

import json
import os

import pytest

from antenna_invariants.results import OUTCOME, RESULTS, FinishedRecord


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session):
    config = session.config
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    by_case = {}
    for reports in terminal.stats.values():
        for report in reports:
            if isinstance(report, pytest.TestReport):
                by_case.setdefault(report.nodeid, {})[report.when] = report
    records = config.stash[RESULTS].records
    calls = [phases["call"] for phases in by_case.values() if "call" in phases]
    scratch = [len(p._reports) for p in config.pluginmanager.get_plugins()
               if type(p).__module__.startswith("pytest_html.") and hasattr(p, "_reports")]
    found = {
        "cases": len(session.items),
        "outcomes_on_items": sum(OUTCOME in item.stash for item in session.items),
        "reports_per_case": sorted({len(phases) for phases in by_case.values()}),
        "keywords_dicts_per_case": sorted({len({id(r.keywords) for r in phases.values()})
                                           for phases in by_case.values()}),
        "records": len(records),
        "finished_records": sum(isinstance(r, FinishedRecord) for r in records),
        "calls_holding_their_record": sum(any(r.invariant is record for record in records) for r in calls),
        "html_scratch": scratch,
    }
    with open(os.environ["INVARIANTS_RETAINED"], "w", encoding="utf-8") as out:
        json.dump(found, out)
    return (yield)
