"""The journal: one JSON Lines file per repair run, a line per row a repair changed, deleted or (an undo)
re-inserted, written and fsynced before the transaction that made the change can commit.

    {"op": "header", "journal": 2, "run": "20261125T223001Z-3f9a", "database": {"name": "antenna", "oid": "16384",
     "system_identifier": "7345..."}, "sum": "9f2c..."}
    {"run": "20261125T223001Z-3f9a", "rule": "D1", "scope": "project5", "op": "update",
     "table": "main_occurrence", "pk": 12, "changed": ["determination_id", ...], "old": {...}, "new": {...},
     "batch": 1, "lines": 3, "sum": "40d1..."}

The first line says which database the journal belongs to (``database_identity``).  ``old`` and ``new`` are
whole rows as PostgreSQL renders them (``to_jsonb``), so columns the mirror does not know are kept too; ``op``
is ``update``, ``delete`` (new is null), ``insert`` (old is null) or ``purge`` (rows deleted for good, counted
and not kept: ``Journal.purge``).  Each line names its batch and the batch's number of lines, and ends with a
``sum``: the SHA-256 of the previous line's sum and this line's text.  A batch is written in one go and fsynced
before its transaction commits, so a batch cut short (SIGKILL, disk full) never committed; an edited line
breaks the chain (``read``).  The sums detect damage and edits, not a forger who runs this code.

How a batch is journaled (``Journal.batch``): the rows a repair may touch are locked (``FOR UPDATE``) and their
images staged in a temporary table before the repair's statement runs; afterwards PostgreSQL itself compares
them with the rows as they now are and builds the lines.  Staging lives in the repair's transaction: a batch
that fails leaves nothing behind, and a process killed before the commit leaves lines whose change never
landed, which ``undo`` recognises (the row still equals ``old``) and skips.  Undo is ``antenna_invariants.undo``.

How a repair reaches its journal: a rule's repair is ``func(violators) -> rows fixed`` and the helpers it calls
to write (``delete_journaled``, ``purge_journaled``, ``determination.rewrite_expected``) take no journal.  They
write through the batch being journaled, ``current()``, which only ``Journal.batch`` binds, for the body of its
``with`` block (a ``ContextVar``, reset when the block ends, so nothing outlives the batch and a nested or
concurrent context cannot see another's journal); outside a batch they refuse.  The repair engine
(``antenna_invariants.repair``) opens every batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db import connection, models
from django.db.models import Model, QuerySet

STAGE = "antenna_invariants_stage"
HISTORY = "antenna_invariants_undo_history"
DELETED = "*"  # the "column" a deleted row touched
VERSION = 2  # the journal format: 2 has a header line, batches and sums (1: bare lines)


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(2)


class Journal:
    def __init__(self, directory: Path, run: str | None = None) -> None:
        self.run = run or new_run_id()
        self.path = Path(directory) / f"journal-{self.run}.jsonl"
        self.counts: dict[tuple[str, str], dict[str, int]] = {}  # (rule, scope) -> {"op table": rows}
        self.columns: dict[tuple[str, str], set[tuple[str, str]]] = {}  # (rule, scope) -> {(table, column)}
        self.batches = 0  # batches written
        self.created = False  # whether this journal created its file
        self.size = 0  # bytes of the file written and fsynced (what a failed write leaves beyond is cut off)
        self.sum = ""  # the last line's sum: the next line's chains to it

    def path_if_written(self) -> str | None:
        return str(self.path) if self.path.exists() else None

    def tally(self, rule: str, scope: str) -> dict[str, int]:
        """Rows journaled for one rule x scope per "op table" (e.g. "delete main_identification")."""
        return dict(sorted(self.counts.get((rule, scope), {}).items()))

    def touched(self, rule: str, scope: str) -> set[tuple[str, str]]:
        """(table, column) pairs one rule x scope changed; a deleted row counts as (table, DELETED)."""
        return self.columns.get((rule, scope), set())

    @contextmanager
    def batch(self, rule: str, scope: str) -> Iterator[Batch]:
        """Journal what the body changes; call inside the transaction (or savepoint) that makes the change.
        The body's writing helpers reach this journal through ``current()``."""
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE} (seq bigserial, op text, tbl text, id bigint, "
                "old jsonb) ON COMMIT DROP"
            )
        batch = Batch(self, rule, scope)
        token = _CURRENT.set(batch)
        try:
            yield batch
        finally:
            _CURRENT.reset(token)
        self._flush(rule, scope)

    def watch(self, model: type[Model], ids: list[int]) -> None:
        """Lock these rows and stage their images: the batch journals the ones that change."""
        self._stage("update", model._meta.db_table, ids)

    def delete(self, queryset: QuerySet) -> int:
        """Delete ``queryset``'s rows, emulating Django's on_delete for their children (CASCADE: delete them
        too; SET_NULL: null the link), set-based and journaled.  Returns the number of the queryset's own
        rows deleted, never the cascade total."""
        ids = list(queryset.order_by("pk").values_list("pk", flat=True))
        return self._delete(queryset.model, ids) if ids else 0

    def _delete(self, model: type[Model], ids: list[int]) -> int:
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
                      FROM (SELECT *, NULL::jsonb AS new, NULL::json AS changed
                              FROM {STAGE} WHERE op = 'delete') AS d""",
                [self.run, rule, scope],
            )
            lines = [row[1:] for row in sorted(lines + cursor.fetchall())]
            self.columns.setdefault((rule, scope), set()).update(
                (table, column) for op, table, changed, _ in lines for column in (changed or [DELETED])
            )
            cursor.execute(f"TRUNCATE {STAGE}")
        self._append(rule, scope, lines)

    def purge(self, rule: str, scope: str, table: str, count: int, first_id: int | None, last_id: int | None) -> None:
        """Journal ``count`` rows of ``table`` (ids ``first_id``..``last_id``) that a repair deletes for good,
        as one line (op ``purge``) instead of a line per row: for bulk deletes whose rows are not worth keeping
        (old job logs).  Call it inside the transaction that deletes them, before it commits, like every line.
        Undo cannot restore them: it reports "not restorable: N rows of T purged (ids a-b)" and goes on."""
        line = json.dumps({
            "run": self.run, "rule": rule, "scope": scope, "op": "purge", "table": table, "pk": None,
            "count": count, "first_id": first_id, "last_id": last_id,
        })
        self._write([line])
        counts = self.counts.setdefault((rule, scope), {})
        counts[f"purge {table}"] = counts.get(f"purge {table}", 0) + count
        self.columns.setdefault((rule, scope), set()).add((table, DELETED))

    def _append(self, rule: str, scope: str, lines: list[tuple[Any, ...]]) -> None:
        """Append ``(op, table, ..., line)`` rows to the file as one batch and fsync."""
        if not lines:
            return
        self._write([row[-1] for row in lines])
        counts = self.counts.setdefault((rule, scope), {})
        for op, table, *_ in lines:
            counts[f"{op} {table}"] = counts.get(f"{op} {table}", 0) + 1

    def _write(self, texts: list[str]) -> None:
        """Write one batch of lines (JSON objects' text), each with the batch's number and size and its sum,
        in one go, and fsync; a new file starts with the header.  A write that failed part way (disk full)
        is cut off before the next one, so a torn line can only be the file's last."""
        number = self.batches + 1
        lines = [] if self.size else [self._header()]
        lines += [text[:-1] + f', "batch": {number}, "lines": {len(texts)}}}' for text in texts]
        text, chain = seal(lines, self.sum)
        data = text.encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "r+b" if self.created else "xb") as handle:  # "x": never into another run's journal
            if not self.created:
                self.created = True
                _fsync_directory(self.path.parent)
            handle.truncate(self.size)
            handle.seek(self.size)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        self.size, self.sum, self.batches = self.size + len(data), chain, number

    def _header(self) -> str:
        return json.dumps({"op": "header", "journal": VERSION, "run": self.run, "database": database_identity()})


def database_identity() -> dict[str, str | None]:
    """Which database this is: its name and oid, and the server's system identifier (unique per cluster
    since initdb; ``pg_control_system()``, which a role may be denied: then None, and name and oid decide)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database(), oid::text FROM pg_database WHERE datname = current_database()")
        name, oid = cursor.fetchone()
        cursor.execute("SELECT has_function_privilege('pg_control_system()', 'EXECUTE')")
        system = None
        if cursor.fetchone()[0]:
            cursor.execute("SELECT system_identifier::text FROM pg_control_system()")
            system = cursor.fetchone()[0]
    return {"name": name, "oid": oid, "system_identifier": system}


def seal(texts: list[str], previous: str = "") -> tuple[str, str]:
    """Lines (JSON objects' text) with their sums, chained from ``previous``: (the lines' text, the last sum)."""
    sealed = []
    for text in texts:
        previous = line_sum(previous, text)
        sealed.append(f'{text[:-1]}, "sum": "{previous}"}}\n')
    return "".join(sealed), previous


def line_sum(previous: str, text: str) -> str:
    """A line's sum: SHA-256 of the previous line's sum and the line's text without its own sum."""
    return hashlib.sha256(f"{previous}\n{text}".encode()).hexdigest()


def _fsync_directory(directory: Path) -> None:
    """A new file's name is durable once its directory is synced."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _changed(op: str, new: str, old: str) -> str:
    """SQL: the sorted names of the columns an update changed (a JSON array); NULL for other ops."""
    return (
        f"CASE WHEN {op} = 'update' THEN (SELECT json_agg(k ORDER BY k) FROM jsonb_object_keys({new}) k "
        f"WHERE ({new}) -> k IS DISTINCT FROM ({old}) -> k) END"
    )


def _line(
    run: str, rule: str, scope: str, op: str, table: str, pk: str, old: str, new: str, changed: str | None = None
) -> str:
    """SQL building one journal line from SQL expressions (json keeps the key order for the reader)."""
    return (
        f"json_build_object('run', {run}, 'rule', {rule}, 'scope', {scope}, 'op', {op}, 'table', {table}, "
        f"'pk', {pk}, 'changed', {changed or _changed(op, new, old)}, 'old', {old}, 'new', {new})::text"
    )


def _reverse_relations(model: type[Model]) -> list[Any]:
    """Foreign keys (mirrored or auto-created M2M through tables) pointing at ``model``."""
    return [
        f
        for f in model._meta.get_fields(include_hidden=True)
        if (f.one_to_many or f.one_to_one) and f.auto_created and not f.concrete
    ]


@dataclass(frozen=True)
class Batch:
    """The batch a repair is writing: its journal and the rule x scope its lines are for."""

    journal: Journal
    rule: str
    scope: str


_CURRENT: ContextVar[Batch | None] = ContextVar("antenna_invariants_journal_batch", default=None)


def current(what: str = "a repair") -> Batch:
    """The batch being journaled (bound by ``Journal.batch`` for its body); refuses outside one."""
    batch = _CURRENT.get()
    if batch is None:
        raise RuntimeError(f"{what} needs an active journal (a batch of the repair engine)")
    return batch


def delete_journaled(queryset: models.QuerySet) -> int:
    """For deleting repairs: delete ``queryset`` through the batch's journal (refuses outside a batch)."""
    return current("a deleting repair").journal.delete(queryset)


def purge_journaled(queryset: models.QuerySet) -> int:
    """For repairs that delete rows not worth keeping one by one (old job logs): delete ``queryset``'s rows in
    one statement and journal one ``purge`` line, their count and id range (``Journal.purge``).  Undo cannot
    restore them and says so.  Refused for a table other rows point at (their cascade would go unjournaled)."""
    batch = current("a purging repair")
    model = queryset.model
    if _reverse_relations(model):
        raise RuntimeError(f"{model._meta.db_table} has dependent rows: delete it with delete_journaled")
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f'WITH gone AS (DELETE FROM "{table}" WHERE id IN ({sql}) RETURNING id) '
            "SELECT count(*), min(id), max(id) FROM gone",
            params,
        )
        count, first, last = cursor.fetchone()
    if count:
        batch.journal.purge(batch.rule, batch.scope, table, count, first, last)
    return count


# --- reading ----------------------------------------------------------------------------------------------


class JournalError(ValueError):
    """A file undo must not act on: not a journal, an edited line, another database's (one line, exit 4)."""


Line = tuple[int, dict[str, Any], str]  # a journal line as read: (line number, parsed, text)


@dataclass
class Reading:
    """A journal as read: ``header`` (None for a version-1 journal), the lines of its whole batches as
    (line number, parsed line, text), and the line numbers of a batch cut off while being written."""

    header: dict[str, Any] | None
    lines: list[Line] = field(default_factory=list)
    torn: tuple[int, int] | None = None


SUM = re.compile(r', "sum": "([0-9a-f]{64})"}\n?$')


def read(path: Path, version_1: bool = False) -> Reading:
    """Read and verify a journal.  Every line must be whole and carry the sum that chains it to the line
    before (an edited, inserted, dropped or reordered line breaks the chain: ``JournalError``).  Only the
    last batch may be incomplete, cut off by a crash or a full disk while it was written: it was written
    before its transaction could commit, so it never committed, and it is reported in ``torn``, not read.
    A version-1 journal (no header, no sums) is read only when ``version_1`` says to trust it; its torn last
    line is skipped the same way."""
    with open(path, "rb") as handle:
        raw = [(number, line) for number, line in enumerate(handle, 1) if line.strip()]
    if not raw:
        return Reading(header=None, torn=(1, 1))  # created, then killed before its first batch was written
    last = raw[-1][0]
    first = _json(raw[0][1])
    if first is None and len(raw) == 1 and not raw[0][1].endswith(b"\n"):
        return Reading(header=None, torn=(1, 1))
    if isinstance(first, dict) and first.get("op") in ("update", "delete", "insert") and "sum" not in first:
        return _read_version_1(path, raw, version_1)
    if not isinstance(first, dict) or first.get("journal") != VERSION:
        raise JournalError(f"{path}:1: not a journal (no version {VERSION} header)")
    reading, chain = Reading(header=first), ""
    batch: list[Line] = []
    for number, line in raw:
        meta = _json(line)
        found = SUM.search(line.decode("utf-8", "replace"))
        if meta is None or found is None:
            if number == last and not line.endswith(b"\n"):  # a torn write: the batch never committed
                reading.torn = ((batch[0][0] if batch else number), number)
                return reading
            raise JournalError(f"{path}:{number}: not a journal line")
        text = line.decode().rstrip("\n")
        body = text[: found.start()] + "}"
        if line_sum(chain, body) != found.group(1):
            raise JournalError(f"{path}:{number}: the line does not match its checksum: the journal was edited")
        chain = found.group(1)
        if number == raw[0][0]:
            continue
        if not isinstance(meta.get("batch"), int) or not isinstance(meta.get("lines"), int):
            raise JournalError(f"{path}:{number}: not a journal line")
        if batch and meta["batch"] != batch[0][1]["batch"]:
            raise JournalError(f"{path}:{number}: batch {batch[0][1]['batch']} ends early: the journal was edited")
        batch.append((number, meta, text))
        if len(batch) == meta["lines"]:
            reading.lines += batch
            batch = []
    if batch:  # cut off at a line's end
        reading.torn = (batch[0][0], last)
    return reading


def _read_version_1(path: Path, raw: list[tuple[int, bytes]], trusted: bool) -> Reading:
    if not trusted:
        raise JournalError(
            f"{path}: a journal from before version {VERSION} (no header, no checksums): undo cannot tell "
            "whether it was edited or which database it belongs to; add --version-1 to undo it anyway"
        )
    reading = Reading(header=None)
    for number, line in raw:
        meta = _json(line)
        if meta is None and number == raw[-1][0] and not line.endswith(b"\n"):
            reading.torn = (number, number)
        elif meta is None:
            raise JournalError(f"{path}:{number}: not a journal line")
        else:
            reading.lines.append((number, meta, line.decode().rstrip("\n")))
    return reading


def _json(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:  # UnicodeDecodeError is one
        return None
