"""Command line for what is not a check: ``python -m antenna_invariants undo JOURNAL`` and ``docs``.

Exit codes: 0 done; 1 undo finished but refused rows changed since the repair (listed); 4 bad input or
configuration, nothing written (one line on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m antenna_invariants")
    commands = parser.add_subparsers(dest="command", required=True)
    undo = commands.add_parser("undo", help="undo a repair run from its journal (needs DATABASE_URL)")
    undo.add_argument("journal", type=Path)
    undo.add_argument("--dry-run", action="store_true", help="say what would be restored and refused; write nothing")
    commands.add_parser("docs", help="regenerate docs/invariants.md from the rules' docstrings")
    args = parser.parse_args(argv)

    os.environ["DJANGO_SETTINGS_MODULE"] = "antenna_invariants.settings"  # ours, whatever the shell says
    import django

    from antenna_invariants.connection import ConfigError

    try:
        django.setup()
        if args.command == "docs":
            from antenna_invariants.docs import write

            print(write())
            return 0
        return undo_journal(args.journal, args.dry_run)
    except ConfigError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 4


def undo_journal(path: Path, dry_run: bool) -> int:
    from django.db import DatabaseError

    from antenna_invariants.connection import ConfigError
    from antenna_invariants.journal import undo

    if not os.environ.get("DATABASE_URL"):
        raise ConfigError("undo needs DATABASE_URL (the database the repair wrote to)")
    if not path.is_file():
        raise ConfigError(f"{path}: no such journal")
    try:
        result = undo(path, dry_run=dry_run)
    except (DatabaseError, ValueError, OSError) as exc:
        raise ConfigError(f"undo failed, nothing written: {str(exc).strip().splitlines()[0]}") from None
    verb = "would restore" if dry_run else "restored"
    done = ", ".join(f"{n} {what}" for what, n in sorted(result.restored.items())) or "nothing"
    print(f"{verb}: {done}; {result.not_applied} row change(s) not in the database (never committed, or undone)")
    if result.journal:
        print(f"this undo is journaled in {result.journal} (undo it the same way)")
    for table, pk, why in result.refused[:20]:
        print(f"refused: {table} id {pk}: {why} the repair")
    if result.refused:
        print(f"{len(result.refused)} row(s) refused: they changed after the repair and were left as they are")
    return 1 if result.refused else 0


if __name__ == "__main__":
    sys.exit(main())
