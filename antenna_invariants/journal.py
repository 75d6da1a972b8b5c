"""A JSON Lines journal of every row a repair changes or deletes, written before the write, restorable.

Each line is one row image taken by PostgreSQL itself (``to_jsonb``), so columns we do not mirror are kept:
  {"op": "before", "table": "main_occurrence", "row": {...}}   the row as it was before an UPDATE
  {"op": "delete", "table": "main_occurrence", "row": {...}}   a row about to be deleted
``restore`` puts deleted rows back (``jsonb_populate_record``; existing ids are left alone) and sets
updated rows back to their "before" image, all in one transaction.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from django.db import connection, models, transaction

ACTIVE: "Journal | None" = None


class Journal:
    def __init__(self, directory: Path, label: str = "repair"):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        self.path = Path(directory) / f"journal-{label}-{stamp}.jsonl"
        self.counts: dict[tuple[str, str], int] = {}

    def path_if_written(self) -> str | None:
        return str(self.path) if self.path.exists() else None

    def _write(self, op: str, table: str, rows_sql: str, params) -> int:
        """Append one line per row of ``rows_sql`` (which yields ``t``, the rows); PostgreSQL builds the JSON."""
        line = f"jsonb_build_object('op', '{op}', 'table', '{table}', 'row', to_jsonb(t))::text"
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {line} FROM ({rows_sql}) t", params)
            rows = [row[0] for row in cursor.fetchall()]
        if not rows:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("\n".join(rows) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.counts[(op, table)] = self.counts.get((op, table), 0) + len(rows)
        return len(rows)

    def before(self, model, ids: list[int]) -> None:
        table = model._meta.db_table
        self._write("before", table, f'SELECT * FROM "{table}" WHERE id = ANY(%s) ORDER BY id', [ids])

    def delete(self, queryset) -> int:
        """Journal, then delete the rows of ``queryset`` and emulate Django's on_delete for their children
        (CASCADE: journal and delete; SET_NULL: journal the child and null the link), set-based.
        Returns the number of rows of ``queryset``'s own table deleted (never the cascade total)."""
        model = queryset.model
        ids = list(queryset.order_by("pk").values_list("pk", flat=True))
        return _delete(self, model, ids) if ids else 0

    def tally(self) -> dict[str, int]:
        """Rows journaled so far per "op table" (e.g. "delete main_identification"): the cascade breakdown."""
        return {f"{op} {table}": n for (op, table), n in sorted(self.counts.items())}


def _delete(journal: Journal, model, ids: list[int]) -> int:
    table = model._meta.db_table
    for relation in _reverse_relations(model):
        child, column = relation.related_model, relation.field.column
        child_table = child._meta.db_table
        on_delete = relation.on_delete
        if on_delete is models.CASCADE:
            child_ids = list(child.objects.filter(**{f"{relation.field.name}__in": ids}).values_list("pk", flat=True))
            if child_ids:
                _delete(journal, child, child_ids)
        elif on_delete is models.SET_NULL:
            found = journal._write(
                "before", child_table, f'SELECT * FROM "{child_table}" WHERE "{column}" = ANY(%s) ORDER BY id', [ids]
            )
            if found:
                with connection.cursor() as cursor:
                    cursor.execute(f'UPDATE "{child_table}" SET "{column}" = NULL WHERE "{column}" = ANY(%s)', [ids])
    journal._write("delete", table, f'SELECT * FROM "{table}" WHERE id = ANY(%s) ORDER BY id', [ids])
    with connection.cursor() as cursor:
        cursor.execute(f'DELETE FROM "{table}" WHERE id = ANY(%s)', [ids])
        return cursor.rowcount


def _reverse_relations(model):
    """Foreign keys (mirrored or auto-created M2M through tables) pointing at ``model``."""
    return [
        f
        for f in model._meta.get_fields(include_hidden=True)
        if (f.one_to_many or f.one_to_one) and f.auto_created and not f.concrete
    ]


def delete_journaled(queryset) -> int:
    """For deleting repairs: delete ``queryset`` through the active journal (refuses without one)."""
    if ACTIVE is None:
        raise RuntimeError("a deleting repair needs an active journal")
    return ACTIVE.delete(queryset)


def restore(path: Path) -> dict[str, int]:
    """Undo a journal: re-insert deleted rows, reset updated rows to their "before" image."""
    entries = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    counts: dict[str, int] = {}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        for entry in entries:
            if entry["op"] == "delete":
                table = entry["table"]
                cursor.execute(
                    f'INSERT INTO "{table}" SELECT * FROM jsonb_populate_record(NULL::"{table}", %s::jsonb) '
                    "ON CONFLICT (id) DO NOTHING",
                    [json.dumps(entry["row"])],
                )
                counts[f"inserted {table}"] = counts.get(f"inserted {table}", 0) + cursor.rowcount
        for entry in reversed(entries):  # oldest "before" image wins
            if entry["op"] == "before":
                table = entry["table"]
                columns = [c for c in entry["row"] if c != "id"]
                assignments = ", ".join(f'"{c}" = r."{c}"' for c in columns)
                cursor.execute(
                    f'UPDATE "{table}" t SET {assignments} FROM jsonb_populate_record(NULL::"{table}", %s::jsonb) r '
                    "WHERE t.id = r.id",
                    [json.dumps(entry["row"])],
                )
                counts[f"reset {table}"] = counts.get(f"reset {table}", 0) + cursor.rowcount
    return counts
