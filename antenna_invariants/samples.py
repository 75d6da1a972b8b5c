"""What a sample shows: primary keys only, unless ``--sample-columns`` asks for columns on the allowlist.

The allowlist holds keys, foreign keys, timestamps and states: nothing a user typed (names, comments), no
storage paths or URLs, no job parameters, logs or results (where credentials can hide).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from antenna_invariants.check import read_only
from antenna_invariants.errors import ConfigError
from antenna_invariants.rules import Rule
from antenna_invariants.scope import Scope

ALLOWED: dict[str, tuple[str, ...]] = {
    "occurrences": ("project_id", "deployment_id", "event_id", "determination_id", "determination_score"),
    "detections": ("occurrence_id", "source_image_id", "detection_algorithm_id", "timestamp", "detection_score"),
    "classifications": ("detection_id", "taxon_id", "algorithm_id", "score", "terminal", "timestamp"),
    "identifications": ("occurrence_id", "taxon_id", "withdrawn"),
    "captures": ("project_id", "deployment_id", "event_id", "timestamp"),
    "events": ("project_id", "deployment_id", "start", "end"),
    "deployments": ("project_id",),
    "collections": ("project_id",),
    "collection_images": ("sourceimagecollection_id", "sourceimage_id"),
    "taxa": ("parent_id", "rank"),
    "algorithms": ("task_type", "version"),
    "jobs": ("project_id", "status", "job_type_key", "started_at", "finished_at"),
    "job_logs": ("job_id", "level", "created_at"),
    "periodic_tasks": ("enabled", "last_run_at", "crontab_id", "interval_id"),
}


# tables whose rows mean nothing by their id alone (a pair of links): these columns always come with the sample
SHOWN: dict[str, tuple[str, ...]] = {"collection_images": ("sourceimagecollection_id", "sourceimage_id")}


def parse_columns(values: list[str] | None) -> tuple[str, ...]:
    """``["event_id", "taxon_id,score"]`` -> columns, each allowed for at least one table (else exit 4)."""
    columns = tuple(c.strip() for v in values or () for c in v.split(",") if c.strip())
    allowed = {c for names in ALLOWED.values() for c in names}
    for column in columns:
        if column not in allowed:
            raise ConfigError(f"--sample-columns {column}: not on the allowlist ({', '.join(sorted(allowed))})")
    return columns


def sample_rows(entry: Rule, sample: list[int], columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """The sample's rows with the requested columns this rule's table allows, and those it always shows
    (primary key first)."""
    if not sample:  # most cases of a run
        return []
    shown = SHOWN.get(entry.table, ())
    wanted = [*shown, *(c for c in columns if c in ALLOWED.get(entry.table, ()) and c not in shown)]
    if not sample or not wanted:
        return []
    with read_only():
        rows = {r["pk"]: r for r in entry.model.objects.filter(pk__in=sample).values("pk", *wanted)}
    return [{"id": pk} | {c: _plain(rows[pk][c]) for c in wanted} for pk in sample if pk in rows]


def _plain(value: object) -> bool | int | float | str | None:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def store_failures(directory: Path, entry: Rule, scope: Scope, record: dict[str, Any]) -> None:
    """``--store-failures DIR`` (dbt's store_failures): ``DIR/<rule>-<scope>.csv``, every violating id of the
    case with its table's allowlisted columns, streamed from the database (never all in memory)."""

    columns = ALLOWED.get(entry.table, ())
    path = directory / f"{entry.id}-{record['project']}.csv"
    with read_only(), path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["id", *columns])
        rows = entry.violations(scope).order_by("pk").values_list("pk", *columns)
        writer.writerows([_plain(v) for v in row] for row in rows.iterator(chunk_size=2000))
