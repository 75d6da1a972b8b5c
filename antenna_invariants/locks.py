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
``FOR SHARE``.  Rows are locked shallow first, each set in id order, one statement per set.
"""

from __future__ import annotations

from typing import Callable, Iterable

from django.db import connection


def plan(model, depends_on: Iterable[str | Callable]) -> list[tuple[str | Callable, object, str]]:
    """(path, model, lock) for every row set the paths reach, shallowest first; ``lock`` is ``UPDATE`` for a
    set some path leaves through a reverse relation, else ``SHARE``."""
    sets: dict[str | Callable, list] = {}
    for path in depends_on:
        if callable(path):
            sets[path] = [None, "SHARE"]
            continue
        current, names = model, path.split("__")
        for depth, name in enumerate(names):
            field = current._meta.get_field(name)
            if not field.is_relation:
                raise ValueError(f"depends_on {path!r}: {name} is not a relation of {current.__name__}")
            prefix = "__".join(names[: depth + 1])
            entry = sets.setdefault(prefix, [field.related_model, "SHARE"])
            if depth + 1 < len(names) and _reverse(field.related_model, names[depth + 1]):
                entry[1] = "UPDATE"
            current = field.related_model
    order = sorted(sets, key=lambda p: 0 if callable(p) else p.count("__"))
    return [(path, sets[path][0], sets[path][1]) for path in order]


def _reverse(model, name: str) -> bool:
    field = model._meta.get_field(name)
    return field.auto_created and not field.concrete


def lock(model, depends_on: Iterable[str | Callable], ids: list[int]) -> None:
    """Lock the rows the condition of a repair of ``model``'s rows ``ids`` reads (the targets are locked by
    the caller first)."""
    targets = model.objects.filter(pk__any=ids).order_by()
    for path, related, mode in plan(model, depends_on):
        if callable(path):
            rows = path(ids)
            related, rows = rows.model, rows.order_by().values("pk")
        else:
            rows = targets.values(f"{path}__pk")
        sql, params = rows.query.sql_with_params()
        table = related._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f'SELECT count(*) FROM (SELECT 1 FROM "{table}" l WHERE l.id IN ({sql}) ORDER BY l.id FOR {mode} OF l) AS locked',
                params,
            )
