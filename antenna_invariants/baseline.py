"""Baseline (adopt the suite on a dirty database, then ratchet down) and trend (delta since a previous run).

``--write-baseline`` stores, per rule x project, the violation count and, when there are at most ``ID_CAP``
violators, their ids (the fingerprint).  ``--baseline FILE`` then judges a failing case:

- more violations than the baseline: new rows, the case fails;
- ids known on both sides (both counts within ``ID_CAP``): any id not in the baseline is new, the case fails;
- otherwise (the count did not grow): only known violations, the case is ``baselined`` and does not fail.

Beyond ``ID_CAP`` violators only counts are compared, so a fixed row and a new one in the same run balance
out; the cap keeps the file small (at most ``ID_CAP`` ids per case).  A case absent from the baseline has a
baseline of 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db.models import QuerySet

from antenna_invariants.check import Outcome, Status, read_only
from antenna_invariants.errors import ConfigError

SCHEMA_VERSION = 1
REPORT_VERSIONS = (1, 2)  # invariants.json as --compare reads it: version 2 shortened the passing records
ID_CAP = 1000


def key(record: Mapping[str, Any]) -> str:
    return f"{record['rule']}/{record['project']}"


def _read(path: Path, what: str, versions: tuple[int, ...] = (SCHEMA_VERSION,)) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what} {path}: not a JSON file ({exc})") from None
    if not isinstance(document, dict) or document.get("schema_version") not in versions:
        shown = " or ".join(map(str, versions))
        raise ConfigError(f"{what} {path}: not an antenna-invariants file of schema_version {shown}")
    return document


class Baseline:
    def __init__(self, path: Path) -> None:
        document = _read(path, "--baseline")
        if document.get("kind") != "baseline":
            raise ConfigError(f"--baseline {path}: not a baseline (write one with --write-baseline)")
        cases = document.get("cases", {})
        if not isinstance(cases, dict) or not all(map(_baseline_case, cases.values())):
            raise ConfigError(f"--baseline {path}: not a baseline (its cases are not violation counts and ids)")
        self.cases: dict[str, dict[str, Any]] = cases
        self.written: str | None = document.get("run_started") or document.get("written")

    def judge(self, outcome: Outcome, ids: list[int] | None) -> None:
        """Mark a failing outcome ``baselined`` when all its violations are known; record what is new."""
        case = f"{outcome.rule}/{outcome.scope}"
        outcome.new_case = case not in self.cases
        known = self.cases.get(case, {"violations": 0, "ids": []})
        outcome.baseline = known["violations"]
        new = max(outcome.violations - known["violations"], 0)
        if ids is not None and known.get("ids") is not None:
            outcome.new_ids = sorted(set(ids) - set(known["ids"]))
            new = max(new, len(outcome.new_ids))
        outcome.new = new
        if new == 0:
            outcome.status = Status.BASELINED


def fingerprint_ids(violators: QuerySet, violations: int, sample: list[int]) -> list[int] | None:
    """Every violating id when there are at most ``ID_CAP`` (reusing the sample when it is complete)."""
    if violations > ID_CAP:
        return None
    if len(sample) >= violations:
        return list(sample)
    with read_only():
        return list(violators.order_by("pk").values_list("pk", flat=True)[:ID_CAP])


def write(path: Path, outcomes: Sequence[Mapping[str, Any]], run: dict[str, Any]) -> None:
    cases = {
        key(o): {"violations": o["violations"], "ids": o.get("fingerprint")}
        | ({"first_seen": _first_seen_of(o, run)} if o.get("fingerprint") else {})
        for o in sorted(outcomes, key=key)
        if o["violations"] and o["status"] != "error"
    }
    document = {
        "schema_version": SCHEMA_VERSION,
        "kind": "baseline",
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_started": run.get("started"),
        "database": run["database"]["label"],
        "scope": run["scope"],
        "id_cap": ID_CAP,
        "cases": cases,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


def _first_seen_of(record: Mapping[str, Any], run: dict[str, Any]) -> dict[str, str]:
    """Per fingerprint id, the first run that saw it: carried from the record's own ``first_seen`` (what the
    baseline or the compared run knew), else this run."""
    known = record.get("first_seen") or {}
    return {str(pk): str(known.get(str(pk)) or run.get("started")) for pk in record["fingerprint"]}


def first_seen(ids: list[int], started: str, baseline_case: dict[str, Any] | None, baseline_written: str | None,
               previous: dict[str, Any] | None = None) -> dict[str, str]:
    """When each of ``ids`` was first seen (issue 20, "when it appeared"): from the baseline's ``first_seen``
    (older baselines: when it was written, for the ids it holds), from a ``--compare`` report's record (its
    ``first_seen``, or its run's start for the ids it listed), else this run (``started``).  Only the ids we
    know about are claimed: an id beyond what either kept is given this run only when nothing else lists it."""
    seen = {}
    for pk in ids:
        found = None
        if baseline_case is not None:
            found = (baseline_case.get("first_seen") or {}).get(str(pk))
            if found is None and pk in (baseline_case.get("ids") or ()):
                found = baseline_written
        if found is None and previous is not None:
            found = (previous.get("first_seen") or {}).get(str(pk))
            if found is None and pk in previous.get("sample", ()):
                found = previous.get("run_started")
        seen[str(pk)] = found or started
    return seen


def previous_records(path: Path) -> dict[str, dict[str, Any]]:
    """``rule/project -> {sample, first_seen, run_started}`` of a previous invariants.json (``--compare``), for
    the first run that saw each id."""
    document = _read(path, "--compare", REPORT_VERSIONS)
    started = (document.get("run") or {}).get("started")
    return {key(r): {"sample": r.get("sample") or [], "first_seen": r.get("first_seen") or {}, "run_started": started}
            for r in document.get("results") or () if _result(r)}


def previous_counts(path: Path) -> dict[str, int]:
    """``rule/project -> violations`` of a previous invariants.json (``--compare``)."""
    document = _read(path, "--compare", REPORT_VERSIONS)
    results = document.get("results")
    if not isinstance(results, list) or not all(map(_result, results)):
        raise ConfigError(
            f"--compare {path}: not an invariants.json report (no results with rule, project and violations)"
        )
    return {key(r): r["violations"] for r in results if r.get("status") not in ("error", "skipped")}


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _result(record: object) -> bool:
    """A record of invariants.json's ``results`` as --compare reads it."""
    return (
        isinstance(record, dict)
        and isinstance(record.get("rule"), str)
        and isinstance(record.get("project"), str)
        and _count(record.get("violations"))
    )


def _baseline_case(case: object) -> bool:
    ids = case.get("ids") if isinstance(case, dict) else None
    return (
        isinstance(case, dict)
        and _count(case.get("violations"))
        and (ids is None or (isinstance(ids, list) and all(map(_count, ids))))
    )


def delta(record: Mapping[str, Any], previous: Mapping[str, int] | None) -> int | None:
    """Violations now minus then; None without ``--compare``, or for a case that did not run then or now."""
    if previous is None or record["status"] in ("error", "skipped"):
        return None
    before = previous.get(key(record))
    return None if before is None else record["violations"] - before
