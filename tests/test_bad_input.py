"""Every bad input is answered with one line ``ERROR: …`` and exit code 4, without a traceback, without a report
and without a write to the database.  The rows of the table are `pytest invariants` (or `python -m
antenna_invariants undo`) runs in a subprocess against the committed self-test database; ``{…}`` placeholders are
filled from a small world (two projects, a job and an occurrence in the first).
"""

import gzip
import json

import psycopg
import pytest
from django.db import connection

from antenna_invariants.connection import url_for
from antenna_invariants.journal import Journal, seal
from fixtures import factories as f
from fixtures.scenarios import jobs, occurrences

pytestmark = pytest.mark.django_db(transaction=True, available_apps=["antenna_invariants.mirror"])

UNDO = ("-m", "antenna_invariants", "undo")
DATABASE_URL = "DATABASE_URL"

CASES = [
    # ids: unknown, malformed
    ("unknown project", ["--project", "999999"], "ERROR: --project 999999: no such project"),
    ("malformed project", ["--project", "5,abc"], "ERROR: --project: 'abc' is not an id"),
    ("negative project", ["--project", "-3"], "ERROR: --project: '-3' is not an id"),
    ("unknown job", ["--job", "999999"], "ERROR: --job 999999: no such job"),
    ("two jobs", ["--job", "1,2"], "ERROR: --job takes one id"),
    ("malformed job", ["--job", "abc"], "ERROR: --job: 'abc' is not an id"),
    ("unknown occurrence", ["--occurrence", "999999"], "ERROR: --occurrence 999999: no such occurrence"),
    ("malformed occurrence", ["--occurrence", "1.5"], "ERROR: --occurrence: '1.5' is not an id"),
    # conflicting options
    ("job of another project", ["--job", "{job}", "--project", "{other}"], "ERROR: --job {job} belongs to project"),
    ("occurrence of another project", ["--occurrence", "{occurrence}", "--project", "{other}"],
     "ERROR: --occurrence {occurrence} belongs to project"),
    ("job and occurrence", ["--job", "{job}", "--occurrence", "{occurrence}"], "ERROR: --job and --occurrence"),
    ("keep without snapshot", ["--keep-snapshot"], "ERROR: --keep-snapshot needs --snapshot"),
    # option values
    ("unscoped repair", ["--repair"], "ERROR: --repair needs a scope"),
    ("negative sample size", ["--sample-size", "-1"], "ERROR: --sample-size must be 0 (all) or more"),
    ("text sample size", ["--sample-size", "many"], "ERROR: usage:"),
    ("unknown tests per", ["--tests-per", "project"], "ERROR: usage:"),
    ("bad timeout", ["--statement-timeout", "1;DROP"], "ERROR: --statement-timeout '1;DROP': give a duration"),
    ("timeout with a space", ["--statement-timeout", "5 min"], "ERROR: --statement-timeout '5 min': give a duration"),
    ("timeout beyond the server's", ["--statement-timeout", "30d"],
     "ERROR: --statement-timeout '30d': give a duration"),
    ("zero repair limit", ["--repair", "--all-projects", "--repair-limit", "0"], "ERROR: --repair-limit must be 1"),
    ("repair under xdist", ["--repair", "--all-projects", "-n", "2"], "ERROR: --repair runs in one process"),
    ("bad max share", ["-o", "invariants_repair_max_share=lots"], "ERROR: invariants_repair_max_share: 'lots'"),
    ("bad job-log age", ["-o", "invariants_joblog_max_age=soon"],
     "ERROR: invariants_joblog_max_age: 'soon' is not an age"),
    ("bad since", ["--since", "yesterday"], "ERROR: --since 'yesterday': give a date"),
    ("future since", ["--since", "2999-01-01"], "ERROR: --since 2999-01-01 is in the future"),
    ("missing baseline", ["--baseline", "{tmp}/none.json"], "ERROR: --baseline {tmp}/none.json: no such file"),
    ("compare: results of the wrong shape", ["--compare", "{tmp}/shape-list.json"],
     "ERROR: --compare {tmp}/shape-list.json: not an invariants.json report"),
    ("compare: results not a list", ["--compare", "{tmp}/shape-dict.json"],
     "ERROR: --compare {tmp}/shape-dict.json: not an invariants.json report"),
    ("baseline: cases of the wrong shape", ["--baseline", "{tmp}/shape-baseline.json"],
     "ERROR: --baseline {tmp}/shape-baseline.json: not a baseline"),
    # python -m antenna_invariants undo
    ("undo: missing argument", [], "ERROR: the following arguments are required: journal (usage: python -m"),
    ("undo: missing journal", ["missing.jsonl"], "ERROR: missing.jsonl: no such journal"),
    ("undo: not a journal", ["README.md"], "ERROR: undo refused, nothing written: README.md:1: not a journal"),
    ("undo: edited journal", ["{tmp}/edited.jsonl"], "edited.jsonl:2: the line does not match its checksum"),
    ("undo: journal of another database", ["{tmp}/foreign.jsonl"], "the journal belongs to another database"),
    ("undo: journal from before checksums", ["{tmp}/old.jsonl"], "a journal from before version 2"),
    ("undo: malformed url", [DATABASE_URL, "postgress://u:s3cret@h/db", "{tmp}/journal.jsonl"],
     "ERROR: DATABASE_URL is not a PostgreSQL URL"),
    ("undo: unreachable database", [DATABASE_URL, "{closed}", "{tmp}/journal.jsonl"], "Connection refused"),
    # the database
    ("malformed url", [DATABASE_URL, "not a url"], "ERROR: DATABASE_URL is not a PostgreSQL URL"),
    ("unreachable database", [DATABASE_URL, "{closed}"], "Connection refused"),
    ("wrong database name", [DATABASE_URL, "{nosuchdb}"], 'database "wt7_no_such_db" does not exist'),
    ("wrong password", [DATABASE_URL, "{badpassword}"], "password authentication failed"),
    ("database without Antenna's tables", [DATABASE_URL, "{empty}"], "has none of Antenna's tables"),
    ("schema drift", ["{drift}"], "ERROR: schema drift: column main_detection.path is missing"),
    ("read-only server with --repair", ["{readonly}", "--repair", "--all-projects"],
     "ERROR: --repair refused: the database is read-only"),
    # snapshots
    ("missing snapshot", ["--snapshot", "{tmp}/none.sql.gz"], "ERROR: --snapshot {tmp}/none.sql.gz: no such file"),
    ("corrupt gzip snapshot", ["--snapshot", "{tmp}/corrupt.sql.gz"], "ERROR: --snapshot {tmp}/corrupt.sql.gz: not"),
    ("corrupt custom snapshot", ["--snapshot", "{tmp}/corrupt.dump"], "ERROR: --snapshot {tmp}/corrupt.dump: "),
    ("snapshot of something else", ["--snapshot", "{tmp}/other.sql.gz"], "has none of Antenna's tables"),
    # reports: permissions, disk full
    ("reports not a directory", ["--reports", "/dev/full"], "ERROR: --reports /dev/full: cannot write there"),
    ("reports under a file", ["--reports", "/dev/full/reports"], "ERROR: --reports /dev/full/reports: cannot write"),
    ("disk full: junit", ["-k", "D1", "--junitxml", "/dev/full"], "ERROR: reports: cannot write /dev/full: "),
    ("disk full: html", ["-k", "D1", "--html", "/dev/full"], "ERROR: reports: cannot write /dev/full: "),
]
AFTER_THE_RUN = {"disk full: junit", "disk full: html"}  # the rules ran: JSON written, the JUnit or HTML not


@pytest.fixture
def world(tmp_path):
    """Two projects, a job and an occurrence in the first; the files and URLs the rows name."""
    station, other = f.DeploymentFactory(), f.ProjectFactory()
    job = jobs.job(station)
    occurrence = occurrences.partial_save(station)
    _journals(tmp_path)
    (tmp_path / "corrupt.sql.gz").write_bytes(b"\x1f\x8b this was a backup once")
    (tmp_path / "corrupt.dump").write_bytes(b"PGDMP" + b"\0" * 64)
    with gzip.open(tmp_path / "other.sql.gz", "wt") as dump:
        dump.write("CREATE TABLE notes (id integer);\n")
    shapes = {"list": {"results": [1, 2]}, "dict": {"results": {"D1/project1": 3}},
              "baseline": {"kind": "baseline", "cases": {"D1/project1": [3]}}}
    for name, document in shapes.items():
        (tmp_path / f"shape-{name}.json").write_text(json.dumps({"schema_version": 1, **document}))
    settings = connection.settings_dict
    server = {k: settings[k] for k in ("HOST", "PORT", "USER", "PASSWORD", "OPTIONS")}
    return {
        "job": job.pk, "occurrence": occurrence.pk, "other": other.pk, "tmp": tmp_path,
        "closed": "postgres://postgres@127.0.0.1:1/antenna",
        "nosuchdb": url_for(server, "wt7_no_such_db"),
        "empty": url_for(server, "postgres"),
    }


def _journals(directory):
    """journal.jsonl (of this database), and copies edited, of another database, and of the old format."""
    journal = Journal(directory, run="bad-input")
    journal.purge("JL1", "global", "jobs_joblog", 3, 1, 3)
    journal.path.rename(directory / "journal.jsonl")
    text = (directory / "journal.jsonl").read_text()
    (directory / "edited.jsonl").write_text(text.replace('"count": 3', '"count": 2'))
    header, line = (json.loads(line) for line in text.splitlines())
    header["database"]["name"] = "another"
    (directory / "foreign.jsonl").write_text(
        seal([json.dumps({k: v for k, v in entry.items() if k != "sum"}) for entry in (header, line)])[0]
    )
    (directory / "old.jsonl").write_text('{"run": "r", "op": "update", "table": "main_occurrence", "pk": 1}\n')


def _password_required() -> str:
    """A URL with a wrong password for a server that asks for one (127.0.0.1:5432), or skip."""
    url = "postgres://postgres:wrong-password@127.0.0.1:5432/postgres?connect_timeout=3"
    try:
        psycopg.connect(url).close()
    except psycopg.OperationalError as exc:
        if "password authentication failed" in str(exc):
            return url
        pytest.skip(f"no server asking for a password at 127.0.0.1:5432 ({str(exc).strip()[:60]})")
    pytest.skip("127.0.0.1:5432 trusts every connection: a wrong password cannot be refused there")


def _alter(statement: str):
    with connection.cursor() as cursor:
        cursor.execute(statement)


@pytest.mark.parametrize(("name", "args", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_code_4(run, invariants, world, name, args, message):
    fill = {**world, **{token: "{" + token + "}" for token in ("badpassword", "drift", "readonly")}}
    args = [a.format(**fill) for a in args]
    message = message.format(**fill)
    env, undo = {}, name.startswith("undo:")
    if args and args[0] == DATABASE_URL:
        env[DATABASE_URL] = _password_required() if args[1] == "{badpassword}" else args[1]
        args = args[2:]
    table_name = connection.settings_dict["NAME"]
    before, restore = invariants.snapshot(), None
    if args and args[0] == "{drift}":
        _alter("ALTER TABLE main_detection RENAME COLUMN path TO path_renamed")
        restore, args = "ALTER TABLE main_detection RENAME COLUMN path_renamed TO path", args[1:]
    if args and args[0] == "{readonly}":
        _alter(f'ALTER DATABASE "{table_name}" SET default_transaction_read_only = on')
        restore, args = f'ALTER DATABASE "{table_name}" RESET default_transaction_read_only', args[1:]
    try:
        code, output = run(*args, module=UNDO, env=env) if undo else run(*args, env=env)
    finally:
        if restore:
            _alter(restore)

    assert code == 4, output
    errors = [line for line in output.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, output
    assert message in errors[0], output
    assert "Traceback" not in output, output
    assert "INTERNALERROR" not in output, output
    assert "s3cret" not in output, output
    assert invariants.snapshot() == before
    if name not in AFTER_THE_RUN:
        assert not (run.reports / "invariants.json").exists(), output
        assert not (run.reports / "junit.xml").exists(), output


NOTHING_CHECKED = [
    ("bad -k expression", ["-k", "D1 and"], 4),
    ("mistyped test path", ["invariants/test_no_such_rules.py"], 4),
    ("no rule selected", ["-m", "no_such_marker"], 5),
]


@pytest.mark.parametrize(("args", "code"), [c[1:] for c in NOTHING_CHECKED], ids=[c[0] for c in NOTHING_CHECKED])
def test_a_run_that_checks_nothing_claims_nothing_and_keeps_the_previous_reports(run, args, code):
    occurrences.partial_save(f.DeploymentFactory())
    first, output = run("-k", "D1")
    assert first == 1, output
    reports = ("invariants.json", "junit.xml", "report.html")
    before = {name: (run.reports / name).read_bytes() for name in reports}

    exit_code, output = run(*args)

    assert exit_code == code, output
    assert "NO VIOLATIONS REMAIN" not in output, output
    assert "NO FAILING VIOLATIONS" not in output, output
    assert "nothing was checked" in output, output
    assert "Traceback" not in output, output
    assert {name: (run.reports / name).read_bytes() for name in reports} == before
    assert not [p.name for p in run.reports.iterdir() if p.name.endswith(".partial")]



SECRET = "Pw-7he-l3aks"
MALFORMED_URLS = {
    "misspelt scheme": f"postgress://reader:{SECRET}@db.example.org/antenna",
    "one slash": f"postgres:/reader:{SECRET}@db.example.org/antenna",
    "unencoded space": f"postgres://reader:{SECRET} x@db.example.org/antenna",
    "bad percent escape": f"postgres://reader:{SECRET}%zz@db.example.org/antenna",
    "unclosed bracket": f"postgres://reader:{SECRET}@[::1/antenna",
    "keywords, one without =": f"host=db.example.org password={SECRET} dbname",
    "keywords, unclosed quote": f"host=db.example.org password='{SECRET} dbname=antenna",
    "unknown query parameter": f"postgres://reader:{SECRET}@db.example.org/antenna?bogus=1",
}


def _everything_written(output: str, reports) -> str:
    files = [p for p in reports.rglob("*") if p.is_file()] if reports.exists() else []
    return output + "".join(p.read_text(errors="replace") for p in files)


@pytest.mark.parametrize("url", MALFORMED_URLS.values(), ids=MALFORMED_URLS.keys())
def test_a_malformed_database_url_never_shows_its_password(run, url):
    code, output = run(env={DATABASE_URL: url})
    undo_code, undo_output = run("README.md", module=UNDO, env={DATABASE_URL: url})

    written = _everything_written(output + undo_output, run.reports)
    assert SECRET not in written, written
    assert SECRET.replace("-", "%2D") not in written, written
    assert code == 4, output
    assert "ERROR: DATABASE_URL is not a PostgreSQL URL" in output, output
    assert undo_code == 4, undo_output
    assert "ERROR: DATABASE_URL is not a PostgreSQL URL" in undo_output, undo_output


def test_credentials_reach_no_output_and_no_report(run):
    """A password in a working DATABASE_URL (libpq keywords) and credentials in --antenna-url: the run goes on,
    and neither the terminal nor invariants.json, junit.xml or report.html shows them; links carry no user."""
    occurrences.partial_save(f.DeploymentFactory())
    env = {DATABASE_URL: f"{url_for(connection.settings_dict)} password={SECRET}"}
    antenna = f"https://editor:{SECRET}@antenna.example.org"

    code, output = run("-k", "D1", "--antenna-url", antenna, "--write-baseline", env=env)

    assert code == 1, output
    written = _everything_written(output, run.reports)
    assert {p.name for p in run.reports.iterdir()} >= {"invariants.json", "junit.xml", "report.html"}
    assert SECRET not in written
    assert "editor:" not in written
    assert "editor@" not in written
    assert 'href=https://antenna.example.org/projects/' in (run.reports / "report.html").read_text()
