"""Every kind of narrowing, in one place: what one test case covers (a project, or the rows with no project),
optionally narrowed to a job's inferred footprint, a list of occurrences or the rows changed since a time;
the several project scopes a grouped check covers at once (``in_projects``); the options that name them.

A job stores no link from the rows it wrote (fact sheet §6), so ``--job`` is inferred: the job's project,
its input captures (collection, else single capture, else deployment) and its pipeline's algorithms.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.db.models import Q, QuerySet
from django.utils import timezone

from antenna_invariants.errors import ConfigError


class NoProject(enum.Enum):
    """The scope of the rows that belong to no project (``NO_PROJECT``; its label is ``noproject``)."""

    NO_PROJECT = "noproject"

    def __repr__(self) -> str:
        return "NO_PROJECT"


NO_PROJECT = NoProject.NO_PROJECT
ProjectKey = int | Literal[NoProject.NO_PROJECT]  # a project case: a project id, or the rows without one


class NotApplicable(Exception):
    """The scope cannot be applied to this table (e.g. --occurrence on taxa)."""


@dataclass(frozen=True)
class JobFootprint:
    id: int
    project_id: int
    image_source: tuple[str, int] | None  # ("collection" | "single" | "deployment", id)
    algorithm_ids: tuple[int, ...] | None  # None: the job has no pipeline

    @classmethod
    def infer(cls, job_id: int) -> JobFootprint:
        from antenna_invariants.mirror.models import Job  # the app registry is ready only at run time

        job = Job.objects.filter(pk=job_id).first()
        if job is None:
            raise ConfigError(f"--job {job_id}: no such job")
        for kind, value in (
            ("collection", job.source_image_collection_id),
            ("single", job.source_image_single_id),
            ("deployment", job.deployment_id),
        ):
            if value is not None:
                source = (kind, value)
                break
        else:
            source = None
        algorithms: tuple[int, ...] | None = None
        if job.pipeline_id is not None:
            algorithms = tuple(job.pipeline.algorithms.order_by("pk").values_list("pk", flat=True))
        return cls(job.pk, job.project_id, source, algorithms)

    def describe(self) -> str:
        images = f"{self.image_source[0]} {self.image_source[1]}" if self.image_source else "no input captures"
        algos = f"algorithms {list(self.algorithm_ids)}" if self.algorithm_ids is not None else "no pipeline"
        return f"job {self.id}: project {self.project_id}, {images}, {algos}"

    def images(self) -> QuerySet:
        """The ids of the job's input captures (a job with ``image_source``)."""
        from antenna_invariants.mirror.models import SourceImage  # the app registry is ready only at run time

        if self.image_source is None:
            raise ValueError(f"job {self.id} has no input captures")
        kind, value = self.image_source
        lookup = {"collection": "collections", "single": "pk", "deployment": "deployment_id"}[kind]
        return SourceImage.objects.filter(**{lookup: value}).values("pk")


@dataclass(frozen=True)
class Scope:
    project: ProjectKey | None = None  # a project id, NO_PROJECT, or None (every project: global tables)
    job: JobFootprint | None = None
    occurrence_ids: tuple[int, ...] | None = None
    since: datetime | None = None  # --since: only rows changed since (for rules that can be incremental)

    @property
    def label(self) -> str:
        if self.project is None:
            return "global"
        return "noproject" if self.project is NO_PROJECT else f"project{self.project}"

    def restrict(self, queryset: QuerySet) -> QuerySet:
        """The rows of ``queryset`` inside this scope (raises NotApplicable when the table has no such path)."""
        model = queryset.model
        paths = model.scope_paths
        if self.project is not None and "project" in paths:
            if self.project is NO_PROJECT:
                queryset = queryset.filter(**{f"{paths['project']}__isnull": True})
            else:
                queryset = queryset.filter(**{f"{paths['project']}_id": self.project})
        if self.job is not None:
            queryset = _restrict_to_job(queryset, paths, self.job)
        if self.occurrence_ids is not None:
            if "occurrences" not in paths:
                raise NotApplicable(f"{model._meta.db_table} has no occurrence to scope by")
            inner = model.objects.filter(**{f"{paths['occurrences']}__in": self.occurrence_ids})
            queryset = queryset.filter(pk__in=inner.values("pk"))
        return queryset

    def changed(self, queryset: QuerySet, related: tuple[str, ...] = ()) -> QuerySet:
        """The rows of ``queryset`` created or updated since ``since``, or whose ``related`` rows (lookup paths,
        e.g. ``"deployment"``) were; all rows without ``since``.  Antenna sets ``updated_at`` on every save()."""
        if self.since is None:
            return queryset
        condition = Q()
        for path in ("", *related):
            prefix = f"{path}__" if path else ""
            condition |= Q(**{f"{prefix}created_at__gte": self.since}) | Q(**{f"{prefix}updated_at__gte": self.since})
        return queryset.filter(condition)



def _restrict_to_job(queryset: QuerySet, paths: dict[str, Any], job: JobFootprint) -> QuerySet:
    model = queryset.model
    if "jobs" in paths:
        return queryset.filter(**{paths["jobs"]: job.id})
    if "project" not in paths:
        return queryset  # global tables (taxa, algorithms) are not narrowed by a job
    condition = Q()
    if job.image_source is not None and "images" in paths:
        condition &= Q(**{f"{paths['images']}__in": job.images()})
    if job.algorithm_ids is not None and paths.get("algorithms"):
        by_algorithm = Q()
        for path in paths["algorithms"]:
            by_algorithm |= Q(**{f"{path}__in": job.algorithm_ids})
        condition &= by_algorithm
    if not condition:
        return queryset
    return queryset.filter(pk__in=model.objects.filter(condition).values("pk"))


def group_label(project: int | None) -> str:
    """The scope label of a project id read from the database in a grouped check (None: no project)."""
    return Scope(project=NO_PROJECT if project is None else project).label


def in_projects(queryset: QuerySet, path: str, scopes: list[Scope], project_ids: Callable[[], set[int]]) -> QuerySet:
    """Keep ``queryset`` to the scopes' projects (``path``: the lookup to the row's project), and to the rows
    without one when ``NO_PROJECT`` is among them; no condition when they are every project (``project_ids()``,
    asked only then) and the rows without one: a condition on a distant project column would make PostgreSQL
    join every row to it."""
    ids = [s.project for s in scopes if isinstance(s.project, int)]
    unassigned = any(s.project is NO_PROJECT for s in scopes)
    if unassigned and set(ids) >= project_ids():
        return queryset
    condition = Q(**{f"{path}__in": ids})
    if unassigned:
        condition |= Q(**{f"{path}__isnull": True})
    return queryset.filter(condition)


SINCE_AGO = re.compile(r"(\d+)\s*(min|h|d)")
SINCE_UNITS = {"min": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str | None) -> datetime | None:
    """``--since``: a date or date-time (``2026-11-01``, ``2026-11-01T06:00``, in Antenna's wall-clock time)
    or an age (``90min``, ``24h``, ``7d``); a datetime bound as a query parameter, never text in SQL."""
    if value is None:
        return None
    now = timezone.now()  # naive wall-clock time in Antenna's TIME_ZONE (USE_TZ = False)
    ago = SINCE_AGO.fullmatch(value.strip())
    try:
        since = now - _age(ago) if ago else datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        raise ConfigError(f"--since {value!r}: give a date (2026-11-01), a date-time or an age (24h, 7d)") from None
    if since.tzinfo is not None:
        since = timezone.make_naive(since)
    if since > now:
        raise ConfigError(f"--since {value} is in the future")
    return since


def _age(match: re.Match[str]) -> timedelta:
    return timedelta(**{SINCE_UNITS[match[2]]: int(match[1])})


def parse_age(value: str, option: str) -> timedelta:
    """An age (``90d``, ``24h``, ``90min``) as a timedelta; anything else is a one-line usage error."""
    ago = SINCE_AGO.fullmatch(str(value).strip())
    try:
        if ago is not None:
            return _age(ago)
    except OverflowError:
        pass
    raise ConfigError(f"{option}: {value!r} is not an age like 90d, 24h or 90min")


TIMEOUT = re.compile(r"(\d+)(us|ms|s|min|h|d)?")  # PostgreSQL's units; no space: it goes into a -c option
TIMEOUT_MS = {"us": 0.001, "ms": 1, None: 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_timeout(value: str) -> str:
    """``--statement-timeout``: a PostgreSQL duration (``500ms``, ``30s``, ``5min``; ``0`` for none) that the
    server accepts (at most 2147483647 ms), refused here, naming the option, rather than at connect."""
    duration = TIMEOUT.fullmatch(value)
    if duration is None or int(duration[1]) * TIMEOUT_MS[duration[2]] > 2**31 - 1:
        raise ConfigError(
            f"--statement-timeout {value!r}: give a duration like 500ms, 30s or 5min (no space, under 24 days)"
        )
    return value


def parse_ids(values: list[str] | None, option: str) -> tuple[int, ...] | None:
    """``["5", "7,9"]`` -> ``(5, 7, 9)``; a non-integer is a one-line usage error."""
    values = [v for v in values or () if v is not None]
    if not values:
        return None
    ids: list[int] = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part.isdigit():
                raise ConfigError(f"{option}: {part!r} is not an id")
            ids.append(int(part))
    return tuple(dict.fromkeys(ids))
