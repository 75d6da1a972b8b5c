"""What a run was: database (never its password), scope, mode, times and provenance; and keeping secrets out.

Everything here ends up in reports that get mailed around and pasted in tickets (JSON, JUnit, HTML, the
terminal header), so the database is named by host, port and name only, and ``redact`` scrubs a mapping (the
HTML environment table) of passwords, keys and tokens.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from antenna_invariants.connection import MASK, mask
from antenna_invariants.scope import JobFootprint

MIGRATIONS = Path(__file__).resolve().parent / "mirror" / "migrations"
SECRET_NAME = re.compile(r"pass|secret|token|key|credential|auth|dsn|database_url", re.IGNORECASE)


def database_label(entry: Mapping[str, Any]) -> str:
    """``host:port/name`` of a Django DATABASES entry (``local socket`` without a host); no user, no password."""
    host = entry.get("HOST") or "local socket"
    port = f":{entry['PORT']}" if entry.get("PORT") else ""
    return f"{host}{port}/{entry.get('NAME', '')}"


def redact(mapping: dict[str, Any], secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """Mask, in place and recursively, values under secret-sounding names, URL passwords and known secrets."""
    for key, value in mapping.items():
        if isinstance(value, dict):
            redact(value, secrets)
        elif SECRET_NAME.search(str(key)) and not isinstance(value, (bool, int, float)):
            mapping[key] = mask(str(value)) if "://" in str(value) else MASK
        elif isinstance(value, str):
            mapping[key] = scrub(value, secrets)
    return mapping


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    text = mask(text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def schema_revision() -> str:
    """The newest migration of the mirror: the Antenna schema revision this suite mirrors."""
    return max((p.stem for p in MIGRATIONS.glob("[0-9]*.py")), default="unknown")


def provenance() -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {
        "antenna_invariants": version("antenna-invariants"),
        "django": version("Django"),
        "pytest_html": version("pytest-html"),
        "mirror_schema_revision": schema_revision(),
    }


@dataclass(frozen=True)
class RunFacts:
    """What a run's metadata is made of (the session hands it over once it has connected)."""

    database: Mapping[str, Any]  # Django's DATABASES entry of the database checked
    demo: bool
    repair: bool
    scope: str  # the scope, in words (``scope_text``)
    since: datetime | None  # --since
    in_full: tuple[str, ...]  # the rules that cannot be incremental (run in full under --since)


class Run:
    """The run's metadata, as the JSON report's ``run`` object and the HTML title and environment table."""

    def __init__(self, facts: RunFacts) -> None:
        self.started = datetime.now(UTC)
        self._clock = time.perf_counter()
        database = facts.database
        self.database: dict[str, Any] = {
            "label": database_label(database),
            "host": database.get("HOST") or None,
            "port": str(database.get("PORT") or "") or None,
            "name": database.get("NAME"),
            "demo": facts.demo,
        }
        self.mode = "repair" if facts.repair else "check"
        self.scope = facts.scope
        self.provenance = provenance()
        self.secrets = tuple(filter(None, [database.get("PASSWORD")]))
        self.since = facts.since.isoformat(sep=" ", timespec="minutes") if facts.since else None
        self.in_full = sorted(facts.in_full)

    @property
    def title(self) -> str:
        demo = " (DEMO)" if self.database["demo"] else ""
        return f"Antenna invariants: {self.database['label']}{demo}, {self.scope}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "started": self.started.isoformat(timespec="seconds"),
            "duration": round(time.perf_counter() - self._clock, 3),
            "database": self.database,
            "scope": self.scope,
            "mode": self.mode,
            "provenance": self.provenance,
            "since": self.since,  # --since, else null
            "in_full": self.in_full if self.since else [],  # rules that cannot be incremental, run in full
        }

    def incremental_header(self) -> list[str]:
        if not self.since:
            return []
        return [
            f"incremental: rows changed since {self.since} (created_at/updated_at); these rules cannot be "
            f"incremental and run in full: {', '.join(self.in_full)}"
        ]

    def header(self) -> str:
        p = self.provenance
        return (
            f"database: {self.database['label']}; scope: {self.scope}; antenna-invariants {p['antenna_invariants']}, "
            f"Django {p['django']}, mirrored Antenna schema {p['mirror_schema_revision']}"
        )

    def junit_properties(self) -> dict[str, str]:
        return {"database": self.database["label"], "scope": self.scope, "mode": self.mode} | self.provenance

    def environment(self) -> dict[str, str]:
        """Rows for the HTML environment table (pytest-metadata) and the JUnit suite properties."""
        return {
            "Database": self.database["label"] + (" (demo)" if self.database["demo"] else ""),
            "Scope": self.scope,
            "Mode": self.mode,
            "antenna-invariants": self.provenance["antenna_invariants"],
            "Django": self.provenance["django"],
            "Mirrored Antenna schema": self.provenance["mirror_schema_revision"],
        }


def scope_text(
    job: JobFootprint | None, occurrence_ids: tuple[int, ...] | None, projects: tuple[int, ...] | None, cases: int
) -> str:
    """The scope in words (``cases``: the number of project cases of an unscoped run)."""
    if job is not None:
        return job.describe()
    if occurrence_ids:
        return "occurrences " + ", ".join(map(str, occurrence_ids))
    if projects:
        return "projects " + ", ".join(map(str, projects))
    return f"all projects ({cases} project cases)"
