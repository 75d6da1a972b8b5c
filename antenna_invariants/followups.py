"""What a person must do in Antenna after a repair wrote to its database from outside Django.

Antenna keeps cached counts (fact sheet §3) and refreshes them only when its own code saves certain rows;
writes from elsewhere (ours, like identification saves and direct deletions in Antenna) leave them stale.
A repair's journal says which columns it changed; these are the inputs each count rule recomputes from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from antenna_invariants.journal import DELETED
from antenna_invariants.rules import Status

_DETECTION = {"occurrence_id", "bbox", "source_image_id", DELETED}
_DETERMINATION = {"determination_id", "determination_score"}
_TAXON = {"parents_json"}  # include / exclude taxa of the default filters match ancestors

COUNT_INPUTS = {
    "K1": {  # captures' detections_count
        "main_sourceimage": {"project_id"},
        "main_detection": _DETECTION,
        "main_occurrence": _DETERMINATION | {DELETED},
        "main_taxon": _TAXON,
    },
    "K2": {  # events' captures, detections and occurrences counts, start and end
        "main_event": {"project_id"},
        "main_sourceimage": {"event_id", "timestamp", DELETED},
        "main_detection": _DETECTION,
        "main_occurrence": _DETERMINATION | {"event_id", DELETED},
        "main_taxon": _TAXON,
    },
    "K3": {  # deployments' counts, sizes and capture timestamps
        "main_deployment": {"project_id"},
        "main_event": {"deployment_id", DELETED},
        "main_sourceimage": {"deployment_id", "timestamp", "size", DELETED},
        "main_detection": _DETECTION,
        "main_occurrence": _DETERMINATION | {"deployment_id", "event_id", DELETED},
        "main_taxon": _TAXON,
    },
}

WHAT = {
    "K1": "captures' detections_count",
    "K2": "events' cached counts",
    "K3": "deployments' cached counts",
}


def stale_counts(touched: set[tuple[str, str]]) -> list[str]:
    """The count rules whose cached values a repair that changed ``touched`` (table, column) made stale."""
    return [rule for rule, inputs in COUNT_INPUTS.items() if any(c in inputs.get(t, ()) for t, c in touched)]


def followups(outcomes: Sequence[Mapping[str, Any]]) -> list[str]:
    """The lines to print after a run that wrote: what a person must still do.  Cache invalidation, the
    counts a repair made stale that no later case of the run recounted (``outcomes`` in run order: the run
    takes the count rules last, so they are only left when they were not selected or not in scope), and
    how to undo."""
    wrote = [o for o in outcomes if o.get("journal")]
    if not wrote:
        return []
    lines = [
        "Antenna caches query results (django-cachalot) and did not see these writes: run "
        "`python manage.py invalidate_cachalot` in Antenna",
    ]
    stale: dict[str, set[str]] = {}
    for index, o in enumerate(outcomes):
        # a count rule checked (and repaired) later in the run, in the same scope, saw the write already
        later = outcomes[index + 1 :]
        recounted = {(x["rule"], x["project"]) for x in later if x["status"] not in (Status.SKIPPED, Status.ERROR)}
        for rule in (o.get("stale") or ()) if o.get("journal") else ():
            if (rule, o["project"]) not in recounted:
                stale.setdefault(rule, set()).add(o["project"])
    for rule, scopes in sorted(stale.items()):
        projects = sorted(scopes)
        options = " ".join(f"--project {p.removeprefix('project')}" for p in projects if p.startswith("project"))
        lines.append(
            f"{WHAT[rule]} are now stale in {', '.join(projects)}: recount with "
            f"`pytest invariants -m {rule} --repair {options or '--all-projects'}` "
            f"(or Antenna's 'update calculated fields')"
        )
    for journal in sorted({o["journal"] for o in wrote}):
        lines.append(f"undo this run: DATABASE_URL=... python -m antenna_invariants undo {journal}")
    return lines
