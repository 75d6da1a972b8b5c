"""Locking what a repair's violation condition reads, so that a concurrent writer's change always wins.

A repair batch locks its target rows (``FOR UPDATE``, ``Journal.watch``), then the rows its rule declared
the condition depends on (``@rule(..., depends_on=("detections__classifications", ...))``: lookup paths from
the target, forward or reverse), then evaluates the condition in a later statement and writes.  In READ
COMMITTED each statement takes a new snapshot, so once a lock has waited for a writer, the statements after
it see what that writer committed; and until our commit no writer can change a locked row.

Which lock each row gets:
- a row that a path leaves through a reverse relation (an occurrence whose detections are read) is locked
  ``FOR UPDATE``: a new child's foreign-key check takes ``FOR KEY SHARE`` on its parent, which ``FOR UPDATE``
  blocks, so no row can join the set being read;
- any other row read is locked ``FOR SHARE``: it cannot be updated or deleted, and its parents' keys stay.
The targets themselves are ``FOR UPDATE`` already, so their new children wait too.  A dependency may also be
a function ``ids -> queryset`` (rows the paths cannot reach, e.g. a taxon's ancestors); its rows get
``FOR SHARE``.  Rows are locked shallow first, one statement per set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db import connection
from django.db.models import Field, Model, QuerySet

# a lookup path from the target table, or a function ``ids -> queryset`` of the rows a repair reads
DependsOn = str | Callable[[list[int]], QuerySet]


def plan(model: type[Model], depends_on: Iterable[DependsOn]) -> list[tuple[DependsOn, Any, str | None, str]]:
    """(path, model, back, lock) for every row set the paths reach, shallowest first: ``back`` is the lookup
    from those rows to the target, ``lock`` is ``UPDATE`` for a set some path leaves through a reverse relation,
    else ``SHARE`` (model and back are None for a function)."""
    sets: dict[DependsOn, list[Any]] = {}
    for path in depends_on:
        if callable(path):
            sets[path] = [None, None, "SHARE"]
            continue
        current, names = model, path.split("__")
        back: list[str] = []
        for depth, name in enumerate(names):
            field = current._meta.get_field(name)
            if not field.is_relation:
                raise ValueError(f"depends_on {path!r}: {name} is not a relation of {current.__name__}")
            back.insert(0, field.field.name if _is_reverse(field) else field.related_query_name())
            entry = sets.setdefault("__".join(names[: depth + 1]), [field.related_model, "__".join(back), "SHARE"])
            if depth + 1 < len(names) and _is_reverse(field.related_model._meta.get_field(names[depth + 1])):
                entry[2] = "UPDATE"
            current = field.related_model
    order = sorted(sets, key=lambda p: 0 if callable(p) else p.count("__") + 1)
    return [(path, *sets[path]) for path in order]


def _is_reverse(field: Field) -> bool:
    return field.auto_created and not field.concrete


def lock(model: type[Model], depends_on: Iterable[DependsOn], ids: list[int]) -> None:
    """Lock the rows the condition of a repair of ``model``'s rows ``ids`` reads (the caller locks the targets
    first).  Each set is reached from its own side (a join to the targets' ids), so a row is found by the
    index of its link and locked where it is read."""
    for path, related, back, mode in plan(model, depends_on):
        rows = path(ids) if callable(path) else related.objects.filter(**{f"{back}__pk__any": ids})
        sql, params = rows.order_by().values("pk").query.sql_with_params()
        table = rows.model._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT count(*) FROM ({sql} FOR {mode} OF "{table}") AS locked', params)
