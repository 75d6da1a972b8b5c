"""The demo database shows a defect for every rule, and `pytest invariants` without DATABASE_URL uses it."""

import os
import subprocess
import sys

from antenna_invariants.connection import ROOT
from antenna_invariants.mirror.models import Project
from antenna_invariants.rules import RULES
from antenna_invariants.scope import NO_PROJECT
from fixtures.demo import build


def test_the_demo_has_a_defect_for_every_rule(invariants):
    build()
    projects = [*Project.objects.order_by("pk").values_list("pk", flat=True), NO_PROJECT]
    shown = set()
    for entry in RULES.values():
        for project in [None] if entry.is_global else projects:
            if invariants.check(entry.id, project=project).status in ("failed", "warned"):
                shown.add(entry.id)
                break
    assert set(RULES) - shown == set()


def test_without_database_url_the_run_uses_the_embedded_demo(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "invariants", "-p", "no:cacheprovider", "-m", "D1",
         "--reports", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DEMO database on the embedded PostgreSQL (seeded defects, not your data)" in done.stdout
    assert (tmp_path / "invariants.json").is_file()
