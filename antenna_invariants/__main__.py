"""Command line for what is not a check: ``python -m antenna_invariants undo JOURNAL`` and ``docs``.

Exit codes: 0 done; 1 undo finished but refused rows (changed since the repair, or refused by a constraint:
listed); 4 bad input or configuration (a missing argument, an unreadable, edited or another database's journal,
a malformed DATABASE_URL, an unreachable database), nothing written, one line ``ERROR: …`` on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

import django
from django.db import DatabaseError

from antenna_invariants.connection import django_database, mask
from antenna_invariants.docs import write
from antenna_invariants.errors import ConfigError
from antenna_invariants.undo import undo


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own exit code is 2 and its message two lines
        print(f"ERROR: {message} (usage: {' '.join(self.format_usage().split()[1:])})", file=sys.stderr)
        sys.exit(4)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m antenna_invariants")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    undo = commands.add_parser("undo", help="undo a repair run from its journal (needs DATABASE_URL)")
    undo.add_argument("journal", type=Path)
    undo.add_argument("--dry-run", action="store_true", help="say what would be restored and refused; write nothing")
    undo.add_argument(
        "--version-1", action="store_true",
        help="undo a journal written before journals had a header and checksums, trusting the file",
    )
    commands.add_parser("docs", help="regenerate docs/invariants.md from the rules' docstrings")
    args = parser.parse_args(argv)

    os.environ["DJANGO_SETTINGS_MODULE"] = "antenna_invariants.settings"  # ours, whatever the shell says
    try:
        django.setup()
        if args.command == "docs":
            print(write())
            return 0
        return undo_journal(args.journal, args.dry_run, args.version_1)
    except ConfigError as exc:
        print(f"ERROR: {mask(str(exc))}", file=sys.stderr)
        return 4


def undo_journal(path: Path, dry_run: bool, version_1: bool = False) -> int:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise ConfigError("undo needs DATABASE_URL (the database the repair wrote to)")
    django_database(url)  # the settings fell back to no database on a malformed URL: say so (ConfigError)
    if not path.is_file():
        raise ConfigError(f"{path}: no such journal")
    try:
        result = undo(path, dry_run=dry_run, version_1=version_1)
    except (DatabaseError, ValueError, OSError) as exc:  # JournalError is a ValueError
        raise ConfigError(f"undo refused, nothing written: {str(exc).strip().splitlines()[0]}") from None
    verb = "would restore" if dry_run else "restored"
    done = ", ".join(f"{n} {what}" for what, n in sorted(result.restored.items())) or "nothing"
    print(f"{verb}: {done}; {result.not_applied} row change(s) not in the database (never committed, or undone)")
    if result.torn:
        first, last = result.torn
        print(f"skipped lines {first}-{last}: a batch cut off while it was written (a crash or a full disk), "
              "so it never committed")
    for line in result.purged:
        span = f" (ids {line['first_id']}-{line['last_id']})" if line["first_id"] is not None else ""
        print(f"not restorable: {line['count']} rows of {line['table']} purged{span} by {line['rule']}")
    if result.journal:
        print(f"this undo is journaled in {result.journal} (undo it the same way)")
    for table, pk, why in result.refused[:20]:
        print(f"refused: {table} id {pk}: {why}")
    if result.refused:
        print(f"{len(result.refused)} row(s) refused and left as they are")
    return 1 if result.refused else 0


if __name__ == "__main__":
    sys.exit(main())
