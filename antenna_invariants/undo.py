"""Undo a repair run from its journal (``python -m antenna_invariants undo reports/journal-<run>.jsonl``).

A journal is input: undo trusts it only as far as it can check it, and checks all of it before it writes:
- the file is a whole journal whose lines match their checksum chain (``journal.read``); a batch cut off by a
  crash or a full disk never committed and is skipped with a note; any other damage refuses the whole file;
- it belongs to this database (the header's name, oid and system identifier);
- every line names a table the suite's repairs write (``writable_tables``, derived from the rules), and its
  row images are of its own row (``old.id`` and ``new.id`` are the line's ``pk``).

Then the journal is walked newest line first, in one transaction.  What the row must look like now for each
op to be undone, and what undoing it writes:

    op      undo applies when       already not applied when   undo does
    update  row = new               row = old                  set the row back to old
    delete  row is absent           row = old                  insert old
    insert  row = new               row is absent              delete the row
    purge   never: the rows were not kept; reported as not restorable

A row changed since the repair is refused and reported, never overwritten.  Each statement runs in a savepoint
with the constraints checked at once: rows the database refuses (their parent was deleted since, say) are
isolated by splitting the statement, listed and left alone, and the rest is restored.  An undo writes its own
journal, of what it restored only, so it can be undone the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import DataError, IntegrityError, connection, models, transaction

from antenna_invariants.journal import (
    Journal,
    JournalError,
    Line,
    _line,
    _reverse_relations,
    database_identity,
    new_run_id,
    read,
)
from antenna_invariants.layout import load_rules
from antenna_invariants.rules import RULES

HISTORY = "antenna_invariants_undo_history"
TABLE = re.compile(r"[a-z_][a-z0-9_]*")  # a journal is input: its table names must be plain identifiers
INVERSE = {"update": "update", "delete": "insert", "insert": "delete"}


@dataclass
class UndoResult:
    journal: str | None = None
    restored: dict[str, int] = field(default_factory=dict)  # "op table" -> rows undone
    not_applied: int = 0  # lines whose change is not in the database: never committed (a killed run), or undone
    refused: list[tuple[str, int, str]] = field(default_factory=list)  # (table, pk, why)
    torn: tuple[int, int] | None = None  # the lines of a batch cut off while being written (never committed)
    purged: list[dict[str, Any]] = field(default_factory=list)  # purge lines: rows deleted for good, not restorable


def writable_tables() -> set[str]:
    """The tables the suite's repairs write: those of the rules that have a repair, and those their deletes
    reach through Django's on_delete (CASCADE deletes, SET_NULL updates), transitively."""
    load_rules()
    todo, tables = [entry.model for entry in RULES.values() if entry.repair_func is not None], set()
    while todo:
        model = todo.pop()
        if model._meta.db_table not in tables:
            tables.add(model._meta.db_table)
            cascading = (models.CASCADE, models.SET_NULL)
            todo += [r.related_model for r in _reverse_relations(model) if r.on_delete in cascading]
    return tables


def undo(path: Path, directory: Path | None = None, dry_run: bool = False, version_1: bool = False) -> UndoResult:
    """Undo a journal, newest line first, in one transaction; journal the undo itself (unless dry_run).
    Raises ``JournalError`` (nothing written) for a file undo must not act on."""
    reading = read(path, version_1)
    allowed = writable_tables()
    for number, meta, _ in reading.lines:
        problem = _problem(meta, allowed)
        if problem:
            raise JournalError(f"{path}:{number}: {problem}")
    result = UndoResult(torn=reading.torn, purged=[m for _, m, _ in reading.lines if m["op"] == "purge"])
    entries = [entry for entry in reading.lines if entry[1]["op"] != "purge"]
    origin = (reading.header or (entries[0][1] if entries else {"run": "empty"}))["run"]
    journal = Journal(directory or Path(path).parent, f"undo-{origin}-{new_run_id()}")
    with transaction.atomic():
        if reading.header:
            _same_database(path, reading.header.get("database"))
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # a refused row fails its statement, not the commit
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


def _problem(meta: dict[str, Any], allowed: set[str]) -> str | None:
    """What makes a (checksummed) line one undo must not act on, if anything."""
    op, table, pk = meta.get("op"), meta.get("table"), meta.get("pk")
    if op not in (*INVERSE, "purge") or not isinstance(table, str) or not TABLE.fullmatch(table):
        return "not a journal line"
    if op == "purge":
        numbers = [meta.get(k) for k in ("count", "first_id", "last_id")]
        return None if all(isinstance(n, int) for n in numbers[:1]) and all(
            n is None or isinstance(n, int) for n in numbers) else "not a journal line"
    if type(pk) is not int:
        return "not a journal line"
    if table not in allowed:
        return f"{table} is not a table the suite's repairs write"
    for image, absent_for in (("old", "insert"), ("new", "delete")):
        row = meta.get(image)
        names_pk = isinstance(row, dict) and row.get("id") == pk
        if (op == absent_for and row is not None) or (op != absent_for and not names_pk):
            return f"its {image} row is not row {pk}, the line's pk"
    return None


def _same_database(path: Path, recorded: object) -> None:
    here = database_identity()
    recorded = recorded if isinstance(recorded, dict) else {}
    differ = [k for k in ("name", "oid", "system_identifier") if recorded.get(k) != here[k]
              and not (k == "system_identifier" and None in (recorded.get(k), here[k]))]
    if differ:
        raise JournalError(
            f"{path}: the journal belongs to another database (database {recorded.get('name')!r}, oid "
            f"{recorded.get('oid')}, system {recorded.get('system_identifier')}; this is {here['name']!r}, oid "
            f"{here['oid']}, system {here['system_identifier']})"
        )


def _chunks(entries: list[Line], size: int = 5000) -> Iterator[list[Line]]:
    """Consecutive lines of one table and op, each row at most once: one set-based statement each."""
    chunk: list[Line] = []
    seen: set[int] = set()
    for number, meta, line in entries:
        key = (meta["table"], meta["op"])
        if chunk and (key != (chunk[0][1]["table"], chunk[0][1]["op"]) or meta["pk"] in seen or len(chunk) >= size):
            yield chunk
            chunk, seen = [], set()
        chunk.append((number, meta, line))
        seen.add(meta["pk"])
    if chunk:
        yield chunk


def _undo_chunk(chunk: list[Line], journal: Journal, result: UndoResult, dry_run: bool) -> None:
    table, op = chunk[0][1]["table"], chunk[0][1]["op"]
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT id FROM "{table}" WHERE id = ANY(%s) FOR UPDATE', [[m["pk"] for _, m, _ in chunk]])
        cursor.execute(
            f"""SELECT (l ->> 'pk')::bigint, CASE
                  WHEN t.id IS NULL THEN CASE %s WHEN 'delete' THEN 'apply' WHEN 'insert' THEN 'done'
                                                 ELSE 'deleted since the repair' END
                  WHEN %s <> 'delete' AND to_jsonb(t) = l -> 'new' THEN 'apply'
                  WHEN EXISTS (SELECT FROM {HISTORY} h WHERE h.tbl = %s AND h.pk = t.id AND h.n <= u.n
                                                         AND h.old = to_jsonb(t)) THEN 'done'
                  ELSE CASE %s WHEN 'delete' THEN 'present again since the repair'
                               ELSE 'changed since the repair' END END
                  FROM unnest(%s::int[], %s::jsonb[]) u(n, l) LEFT JOIN "{table}" t ON t.id = (l ->> 'pk')::bigint""",
            [op, op, table, op, [n for n, _, _ in chunk], [line for _, _, line in chunk]],
        )
        states = dict(cursor.fetchall())
    result.not_applied += sum(1 for s in states.values() if s == "done")
    result.refused += [(table, pk, why) for pk, why in states.items() if why not in ("apply", "done")]
    apply = [(meta["pk"], line) for _, meta, line in chunk if states[meta["pk"]] == "apply"]
    if apply:
        _restore(table, op, chunk[0][1]["run"], apply, journal, result, dry_run)


def _restore(table: str, op: str, origin: str, rows: list[tuple[int, str]], journal: Journal, result: UndoResult,
             dry_run: bool) -> None:
    """Write ``rows`` (pk, line) back in a savepoint and journal them once the database has taken them; rows it
    refuses are isolated by halving (as ``rules._repair_batch`` does) and listed."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            _write(cursor, table, op, [line for _, line in rows])
            if not dry_run:
                inverse = _line("%s", "'undo'", "%s", f"'{INVERSE[op]}'", "%s", "l -> 'pk'", "l -> 'new'", "l -> 'old'")
                cursor.execute(
                    f"SELECT %s, %s, {inverse} FROM unnest(%s::jsonb[]) l",
                    [INVERSE[op], table, journal.run, origin, table, [line for _, line in rows]],
                )
                journal._append("undo", origin, cursor.fetchall())
    except (IntegrityError, DataError) as exc:
        if len(rows) == 1:
            result.refused.append((table, rows[0][0], f"refused by the database: {str(exc).strip().splitlines()[0]}"))
            return
        middle = len(rows) // 2
        for half in (rows[:middle], rows[middle:]):
            _restore(table, op, origin, half, journal, result, dry_run)
        return
    key = f"{INVERSE[op]} {table}"
    result.restored[key] = result.restored.get(key, 0) + len(rows)


def _write(cursor: Any, table: str, op: str, lines: list[str]) -> None:
    if op == "update":
        columns = [c for c in _columns(cursor, table) if c != "id"]
        cursor.execute(
            f"""UPDATE "{table}" t SET ({", ".join(f'"{c}"' for c in columns)}) =
                       ({", ".join(f'r."{c}"' for c in columns)})
                  FROM unnest(%s::jsonb[]) l, jsonb_populate_record(NULL::"{table}", l -> 'old') r
                 WHERE t.id = r.id""",
            [lines],
        )
    elif op == "delete":
        cursor.execute(
            f"""INSERT INTO "{table}" SELECT r.* FROM unnest(%s::jsonb[]) l,
                       jsonb_populate_record(NULL::"{table}", l -> 'old') r""",
            [lines],
        )
    else:
        cursor.execute(f'DELETE FROM "{table}" WHERE id = ANY(%s)', [[json.loads(x)["pk"] for x in lines]])


def _columns(cursor: Any, table: str) -> list[str]:
    cursor.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum",
        [f'"{table}"'],
    )
    return [name for (name,) in cursor.fetchall()]
