"""Command line for what is not a check: ``python -m antenna_invariants restore JOURNAL`` and ``docs``.

Exit codes: 0 done, 4 bad input or configuration (one line on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m antenna_invariants")
    commands = parser.add_subparsers(dest="command", required=True)
    restore = commands.add_parser("restore", help="undo a repair from its journal (needs DATABASE_URL)")
    restore.add_argument("journal", type=Path)
    commands.add_parser("docs", help="regenerate docs/invariants.md from the rules' docstrings")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "antenna_invariants.settings")
    import django

    from antenna_invariants.connection import ConfigError

    try:
        django.setup()
        if args.command == "docs":
            from antenna_invariants.docs import write

            print(write())
            return 0
        if not os.environ.get("DATABASE_URL"):
            raise ConfigError("restore needs DATABASE_URL (the database the repair wrote to)")
        if not args.journal.is_file():
            raise ConfigError(f"{args.journal}: no such journal")
        from django.db import DatabaseError

        from antenna_invariants.journal import restore as restore_journal

        try:
            counts = restore_journal(args.journal)
        except (DatabaseError, ValueError, KeyError) as exc:
            raise ConfigError(f"restore failed, nothing written: {str(exc).strip().splitlines()[0]}") from None
        print(", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "nothing to restore")
        return 0
    except ConfigError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 4


if __name__ == "__main__":
    sys.exit(main())
