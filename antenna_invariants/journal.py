"""The journal: one JSON Lines file per repair run, a line per row a repair changed, deleted or (an undo)
re-inserted, written and fsynced before the transaction that made the change can commit.

    {"run": "20261125T223001Z-3f9a", "rule": "D1", "scope": "project5", "op": "update",
     "table": "main_occurrence", "pk": 12, "changed": ["determination_id", ...], "old": {...}, "new": {...}}

``old`` and ``new`` are whole rows as PostgreSQL renders them (``to_jsonb``), so columns the mirror does not
know are kept too; ``op`` is ``update``, ``delete`` (new is null) or ``insert`` (old is null).

How a batch is journaled (``Journal.batch``): the rows a repair may touch are locked (``FOR UPDATE``) and their
images staged in a temporary table before the repair's statement runs; afterwards PostgreSQL itself compares
them with the rows as they now are and builds the lines.  Staging lives in the repair's transaction: a batch
that fails leaves nothing behind, and a process killed before the commit leaves lines whose change never
landed, which ``undo`` recognises (the row still equals ``old``) and skips.

``undo`` walks a journal backwards and restores ``old`` only where the row is still exactly ``new``: a row
changed since the repair is refused and reported, never overwritten.  An undo writes its own journal.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from django.db import connection, models, transaction

ACTIVE: "Journal | None" = None
STAGE = "antenna_invariants_stage"
HISTORY = "antenna_invariants_undo_history"
DELETED = "*"  # the "column" a deleted row touched


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(2)


class Journal:
    def __init__(self, directory: Path, run: str | None = None):
        self.run = run or new_run_id()
        self.path = Path(directory) / f"journal-{self.run}.jsonl"
        self.counts: dict[tuple[str, str], dict[str, int]] = {}  # (rule, scope) -> {"op table": rows}
        self.columns: dict[tuple[str, str], set[tuple[str, str]]] = {}  # (rule, scope) -> {(table, column)}

    def path_if_written(self) -> str | None:
        return str(self.path) if self.path.exists() else None

    def tally(self, rule: str, scope: str) -> dict[str, int]:
        """Rows journaled for one rule x scope per "op table" (e.g. "delete main_identification")."""
        return dict(sorted(self.counts.get((rule, scope), {}).items()))

    def touched(self, rule: str, scope: str) -> set[tuple[str, str]]:
        """(table, column) pairs one rule x scope changed; a deleted row counts as (table, DELETED)."""
        return self.columns.get((rule, scope), set())

    @contextmanager
    def batch(self, rule: str, scope: str):
        """Journal what the body changes; call inside the transaction (or savepoint) that makes the change."""
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE} (seq bigserial, op text, tbl text, id bigint, "
                "old jsonb) ON COMMIT DROP"
            )
        yield self
        self._flush(rule, scope)

    def watch(self, model, ids: list[int]) -> None:
        """Lock these rows and stage their images: the batch journals the ones that change."""
        self._stage("update", model._meta.db_table, ids)

    def delete(self, queryset) -> int:
        """Delete ``queryset``'s rows, emulating Django's on_delete for their children (CASCADE: delete them
        too; SET_NULL: null the link), set-based and journaled.  Returns the number of the queryset's own
        rows deleted, never the cascade total."""
        ids = list(queryset.order_by("pk").values_list("pk", flat=True))
        return self._delete(queryset.model, ids) if ids else 0

    def _delete(self, model, ids: list[int]) -> int:
        table = model._meta.db_table
        for relation in _reverse_relations(model):
            child, link = relation.related_model, relation.field
            child_ids = list(child.objects.filter(**{f"{link.name}__any": ids}).values_list("pk", flat=True))
            if not child_ids:
                continue
            if relation.on_delete is models.CASCADE:
                self._delete(child, child_ids)
            elif relation.on_delete is models.SET_NULL:
                self.watch(child, child_ids)
                child.objects.filter(pk__any=child_ids).update(**{link.name: None})
        self._stage("delete", table, ids)
        with connection.cursor() as cursor:
            cursor.execute(f'DELETE FROM "{table}" WHERE id = ANY(%s)', [ids])
            return cursor.rowcount

    def _stage(self, op: str, table: str, ids: list[int]) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"""INSERT INTO {STAGE} (op, tbl, id, old)
                    SELECT %s, %s, t.id, to_jsonb(t) FROM "{table}" t
                     WHERE t.id = ANY(%s)
                       AND NOT EXISTS (SELECT FROM {STAGE} s WHERE s.op = %s AND s.tbl = %s AND s.id = t.id)
                     ORDER BY t.id FOR UPDATE OF t""",
                [op, table, ids, op, table],
            )

    def _flush(self, rule: str, scope: str) -> None:
        """Compare the staged images with the rows as they are now, append a line per change (in staging
        order), fsync.  One statement per table updated, one for the deletes; the fences (``OFFSET 0``) keep
        PostgreSQL from rendering a row or diffing it more than once."""
        line = _line("%s", "%s", "%s", "op", "tbl", "id", "old", "new", "changed")
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT DISTINCT tbl FROM {STAGE} WHERE op = 'update'")
            lines = []
            for (table,) in cursor.fetchall():
                cursor.execute(
                    f"""SELECT seq, op, tbl, changed, {line} FROM (
                            SELECT n.*, {_changed("op", "new", "old")} AS changed FROM (
                                SELECT s.seq, s.op, s.tbl, s.id, s.old, to_jsonb(t) AS new
                                  FROM {STAGE} s JOIN "{table}" t ON t.id = s.id
                                 WHERE s.op = 'update' AND s.tbl = %s OFFSET 0) AS n
                             WHERE new <> old OFFSET 0) AS c""",
                    [self.run, rule, scope, table],
                )
                lines += cursor.fetchall()
            cursor.execute(
                f"""SELECT seq, op, tbl, changed, {line}
                      FROM (SELECT *, NULL::jsonb AS new, NULL::json AS changed FROM {STAGE} WHERE op = 'delete') AS d""",
                [self.run, rule, scope],
            )
            lines = [row[1:] for row in sorted(lines + cursor.fetchall())]
            self.columns.setdefault((rule, scope), set()).update(
                (table, column) for op, table, changed, _ in lines for column in (changed or [DELETED])
            )
            cursor.execute(f"TRUNCATE {STAGE}")
        self._append(rule, scope, lines)

    def _append(self, rule: str, scope: str, lines: list[tuple]) -> None:
        """Append ``(op, table, ..., line)`` rows to the file and fsync."""
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("".join(row[-1] + "\n" for row in lines))
            handle.flush()
            os.fsync(handle.fileno())
        counts = self.counts.setdefault((rule, scope), {})
        for op, table, *_ in lines:
            counts[f"{op} {table}"] = counts.get(f"{op} {table}", 0) + 1


def _changed(op: str, new: str, old: str) -> str:
    """SQL: the sorted names of the columns an update changed (a JSON array); NULL for other ops."""
    return (
        f"CASE WHEN {op} = 'update' THEN (SELECT json_agg(k ORDER BY k) FROM jsonb_object_keys({new}) k "
        f"WHERE ({new}) -> k IS DISTINCT FROM ({old}) -> k) END"
    )


def _line(run: str, rule: str, scope: str, op: str, table: str, pk: str, old: str, new: str, changed: str | None = None) -> str:
    """SQL building one journal line from SQL expressions (json keeps the key order for the reader)."""
    return (
        f"json_build_object('run', {run}, 'rule', {rule}, 'scope', {scope}, 'op', {op}, 'table', {table}, "
        f"'pk', {pk}, 'changed', {changed or _changed(op, new, old)}, 'old', {old}, 'new', {new})::text"
    )


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


# --- undo -------------------------------------------------------------------------------------------------

# What the row must look like now for each op to be undone, and what undoing it writes.
#   op      undo applies when       already not applied when   undo does
#   update  row = new               row = old                  set the row back to old
#   delete  row is absent           row = old                  insert old
#   insert  row = new               row is absent              delete the row
TABLE = re.compile(r"[a-z_][a-z0-9_]*")  # a journal is input: its table names must be plain identifiers
INVERSE = {"update": "update", "delete": "insert", "insert": "delete"}


@dataclass
class UndoResult:
    journal: str | None = None
    restored: dict[str, int] = field(default_factory=dict)  # "op table" -> rows undone
    not_applied: int = 0  # lines whose change is not in the database: never committed (a killed run), or undone
    refused: list[tuple[str, int, str]] = field(default_factory=list)  # (table, pk, why)


def undo(path: Path, directory: Path | None = None, dry_run: bool = False) -> UndoResult:
    """Undo a journal, newest line first, in one transaction; journal the undo itself (unless dry_run)."""
    entries = [(number, _parse(path, number, line), line) for number, line in _lines(path)]
    origin = entries[0][1]["run"] if entries else "empty"
    journal = Journal(directory or Path(path).parent, f"undo-{origin}-{new_run_id()}")
    result = UndoResult()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            # every row's history in this journal: a row found in an earlier state was never changed further
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {HISTORY} (n int, tbl text, pk bigint, old jsonb) ON COMMIT DROP"
            )
            cursor.execute(f"TRUNCATE {HISTORY}")
            for start in range(0, len(entries), 5000):
                part = entries[start : start + 5000]
                cursor.execute(
                    f"""INSERT INTO {HISTORY} SELECT u.n, u.l ->> 'table', (u.l ->> 'pk')::bigint, u.l -> 'old'
                          FROM unnest(%s::int[], %s::jsonb[]) u(n, l)""",
                    [[n for n, _, _ in part], [line for _, _, line in part]],
                )
        for chunk in _chunks(list(reversed(entries))):
            _undo_chunk(chunk, journal, result, dry_run)
        if dry_run:
            transaction.set_rollback(True)
    result.journal = journal.path_if_written()
    return result


def _lines(path: Path):
    with open(path, encoding="utf-8") as handle:
        yield from ((number, line.strip()) for number, line in enumerate(handle, 1) if line.strip())


def _parse(path: Path, number: int, line: str) -> dict:
    """A journal is input: every line must be a journal line, with a plain identifier for a table."""
    try:
        meta = json.loads(line)
        valid = meta["op"] in INVERSE and isinstance(meta["pk"], int) and TABLE.fullmatch(meta["table"])
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise ValueError(f"{path}:{number}: not a journal line")
    return meta


def _chunks(entries, size: int = 5000):
    """Consecutive lines of one table and op, each row at most once: one set-based statement each."""
    chunk, seen = [], set()
    for number, meta, line in entries:
        key = (meta["table"], meta["op"])
        if chunk and (key != (chunk[0][1]["table"], chunk[0][1]["op"]) or meta["pk"] in seen or len(chunk) >= size):
            yield chunk
            chunk, seen = [], set()
        chunk.append((number, meta, line))
        seen.add(meta["pk"])
    if chunk:
        yield chunk


def _undo_chunk(chunk, journal: Journal, result: UndoResult, dry_run: bool) -> None:
    table, op = chunk[0][1]["table"], chunk[0][1]["op"]
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT id FROM "{table}" WHERE id = ANY(%s) FOR UPDATE', [[m["pk"] for _, m, _ in chunk]])
        cursor.execute(
            f"""SELECT (l ->> 'pk')::bigint, CASE
                  WHEN t.id IS NULL THEN CASE %s WHEN 'delete' THEN 'apply' WHEN 'insert' THEN 'done'
                                                 ELSE 'deleted since' END
                  WHEN %s <> 'delete' AND to_jsonb(t) = l -> 'new' THEN 'apply'
                  WHEN EXISTS (SELECT FROM {HISTORY} h WHERE h.tbl = %s AND h.pk = t.id AND h.n <= u.n
                                                         AND h.old = to_jsonb(t)) THEN 'done'
                  ELSE CASE %s WHEN 'delete' THEN 'present again' ELSE 'changed since' END END
                  FROM unnest(%s::int[], %s::jsonb[]) u(n, l) LEFT JOIN "{table}" t ON t.id = (l ->> 'pk')::bigint""",
            [op, op, table, op, [n for n, _, _ in chunk], [line for _, _, line in chunk]],
        )
        states = dict(cursor.fetchall())
        result.not_applied += sum(1 for s in states.values() if s == "done")
        result.refused += [(table, pk, why) for pk, why in states.items() if why not in ("apply", "done")]
        apply = [line for _, meta, line in chunk if states[meta["pk"]] == "apply"]
        if not apply:
            return
        key = f"{INVERSE[op]} {table}"
        result.restored[key] = result.restored.get(key, 0) + len(apply)
        if dry_run:
            return
        origin = chunk[0][1]["run"]
        inverse = _line("%s", "'undo'", "%s", f"'{INVERSE[op]}'", "%s", "l -> 'pk'", "l -> 'new'", "l -> 'old'")
        cursor.execute(
            f"SELECT %s, %s, {inverse} FROM unnest(%s::jsonb[]) l", [INVERSE[op], table, journal.run, origin, table, apply]
        )
        journal._append("undo", origin, cursor.fetchall())
        if op == "update":
            columns = [c for c in _columns(cursor, table) if c != "id"]
            cursor.execute(
                f"""UPDATE "{table}" t SET ({", ".join(f'"{c}"' for c in columns)}) =
                           ({", ".join(f'r."{c}"' for c in columns)})
                      FROM unnest(%s::jsonb[]) l, jsonb_populate_record(NULL::"{table}", l -> 'old') r
                     WHERE t.id = r.id""",
                [apply],
            )
        elif op == "delete":
            cursor.execute(
                f"""INSERT INTO "{table}" SELECT r.* FROM unnest(%s::jsonb[]) l,
                           jsonb_populate_record(NULL::"{table}", l -> 'old') r""",
                [apply],
            )
        else:
            cursor.execute(f'DELETE FROM "{table}" WHERE id = ANY(%s)', [[json.loads(x)["pk"] for x in apply]])


def _columns(cursor, table: str) -> list[str]:
    cursor.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum",
        [f'"{table}"'],
    )
    return [name for (name,) in cursor.fetchall()]
