"""The benchmark harness at a tiny scale (bench/): its figures are computed on the right rows.

The harness runs in a subprocess (it points Django at its own database): the generator plants violations
of every rule, and the engine's full run, the hand-written floor queries and the planted ids must agree
rule by rule; the per-row D1 baseline and the engine's set-based repair must write the same determinations,
and the original ones.  Timings are not checked here (docs/benchmarks.md).
"""

import json
import os
import subprocess
import sys

import pytest

from antenna_invariants.connection import ROOT, TEST_DATABASE


@pytest.fixture(scope="module")
def smoke(request):
    """One run per session, on the schema the session builds (mirror migrations or --on-antenna-schema)."""
    schema = "antenna" if request.config.getoption("on_antenna_schema") else "mirror"
    env = dict(os.environ)
    if schema == "antenna":
        env["ANTENNA_SCHEMA_SQL"] = str(request.getfixturevalue("antenna_schema"))  # skips when it is missing
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"{TEST_DATABASE['NAME']}_bench_{worker}"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "harness.py"), name, schema],
                          check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_rule_is_planted_and_found_exactly_by_the_engine_and_the_floor(smoke):
    from antenna_invariants.layout import load_rules
    from antenna_invariants.rules import RULES

    load_rules()
    assert set(smoke["engine"]) == set(RULES) == set(smoke["floor"]) == set(smoke["planted"])
    assert all(n > 0 for n in smoke["planted"].values())
    engine = {rule: sum(by_scope.values()) for rule, by_scope in smoke["engine"].items()}
    disagreeing = {r: (smoke["planted"][r], engine[r], smoke["floor"][r]) for r in RULES
                   if not smoke["planted"][r] == engine[r] == smoke["floor"][r]}
    assert disagreeing == {}


def test_the_grouped_checks_of_a_full_run_find_per_project_what_one_check_per_project_finds(smoke):
    spread = [rule for rule, by_scope in smoke["engine"].items() if sum(n > 0 for n in by_scope.values()) > 1]
    assert len(spread) > 20  # the planted violations fall in several projects for most rules
    assert smoke["engine"] == smoke["per_scope"]


def test_the_per_row_baseline_and_the_set_based_repair_write_the_same_determinations(smoke):
    repair = smoke["repair"]
    assert repair["rows"] == 300
    assert repair["loop_rows"] == 100
    assert repair["fixed"] == 300 + smoke["planted"]["D1"]  # the planted partial saves are repaired too
    assert repair["loop_vs_engine_differences"] == 0
    assert repair["engine_vs_original_differences"] == 0
    assert repair["bare_rows"] == repair["fixed"]  # the same rows
    assert repair["bare_vs_engine_differences"] == 0
    assert repair["speedup"] == pytest.approx(repair["engine_rows_per_s"] / repair["loop_rows_per_s"])


@pytest.mark.parametrize("script", ["run.py", "explain.py"])
def test_the_bench_commands_parse_their_options(script):
    """A broken option parser (two options of one name, after a merge) fails here, not on the bench machine."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--help"],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


def test_a_partial_bench_run_keeps_the_figures_it_did_not_measure(tmp_path):
    """results.json lost its 1M figures to build-only and single-figure runs once; it keeps them now, unless the
    scale changed (figure 6's runs stay at any scale)."""
    script = f"""
import json, sys
sys.path.insert(0, {str(ROOT / 'bench')!r})
from pathlib import Path
from run import write_results
path = Path({str(tmp_path / 'results.json')!r})
one = {{"occurrences": 1000000, "violations": 1000, "projects": 20, "interleaved": False, "schema": "antenna"}}
write_results(path, {{"scale": one, "catalogue": 1, "many_projects": {{"200": 6}}}})
write_results(path, {{"scale": one | {{"figures": ["2"]}}, "repair": 2}})
kept = json.loads(path.read_text())
write_results(path, {{"scale": one | {{"occurrences": 50000}}, "repair": 3}})
print(json.dumps([kept, json.loads(path.read_text())]))
"""
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT / "bench", capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    kept, rescaled = json.loads(done.stdout)
    assert (kept["catalogue"], kept["repair"], kept["many_projects"]) == (1, 2, {"200": 6})
    assert "catalogue" not in rescaled
    assert (rescaled["repair"], rescaled["many_projects"]) == (3, {"200": 6})
