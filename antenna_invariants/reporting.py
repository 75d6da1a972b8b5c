"""Outcomes out: failure messages, the terminal summary and reports/invariants.json (the HTML is html.py).

The run's records (``results.Results``) and the run's scope option are handed in; nothing here holds a run."""

from __future__ import annotations

import io
import json
import os
import tempfile
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from _pytest.junitxml import xml_key  # pytest's JUnit writer: no public handle re-points its path or unregisters it

from antenna_invariants import blame, summary
from antenna_invariants.errors import ConfigError
from antenna_invariants.followups import followups
from antenna_invariants.layout import IN_CHECKOUT
from antenna_invariants.rules import Rule, Status


def ensure_writable(directory: Path, option: str = "--reports") -> None:
    """The reports directory exists and takes a file, before any rule runs (else one line, exit 4)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise ConfigError(f"{option} {directory}: cannot write there ({exc.strerror or exc})") from None


def write_failed(exc: OSError, staged: dict[str, str] | None = None) -> str:
    """The one line for a report that could not be written (disk full, permissions), naming the file: exit 4."""
    where = exc.filename or _file_being_written(exc)
    finals = {os.path.abspath(temp): final for final, temp in (staged or {}).items()}
    where = finals.get(os.path.abspath(where), where) if where else None
    return f"ERROR: reports: cannot write{f' {where}' if where else ''}: {exc.strerror or exc}"


def _file_being_written(exc: OSError) -> str | None:
    """The file open in the innermost frame that raised ``exc`` (a full disk fails at write or close, and
    then the error carries no file name)."""
    names = [
        name
        for frame, _ in traceback.walk_tb(exc.__traceback__)
        for value in frame.f_locals.values()
        if isinstance(value, io.IOBase) and isinstance(name := getattr(value, "name", None), str)
    ]
    return names[-1] if names else None


def stage(config: pytest.Config) -> dict[str, str]:
    """Point JUnit and HTML at a file beside each report (``{final: staged}``): ``publish`` renames them into
    place only when the run checked something, so a run that checked nothing (exit 4 or 5) or a full disk
    leaves the previous reports as they were.  A path that is not a regular file (a device) is written as is."""
    staged: dict[str, str] = {}
    for option in ("xmlpath", "htmlpath"):
        final = getattr(config.option, option, None)
        if final and (not os.path.exists(final) or os.path.isfile(final)):
            directory, name = os.path.split(final)
            staged[final] = os.path.join(directory, f".{name}.{os.getpid()}.partial")
            setattr(config.option, option, staged[final])
    return staged


def publish(staged: dict[str, str], checked: bool) -> None:
    """Rename the staged reports into place (``checked``), or remove them."""
    for final, temp in staged.items():
        if checked and os.path.exists(temp):
            os.replace(temp, final)
        else:
            Path(temp).unlink(missing_ok=True)


def default_report_paths(config: pytest.Config, reports: Path) -> None:
    """JUnit XML and HTML go to the reports directory unless the user chose other paths."""
    if getattr(config.option, "xmlpath", None) is None:
        config.option.xmlpath = str(reports / "junit.xml")
    if hasattr(config.option, "htmlpath") and config.option.htmlpath is None:
        config.option.htmlpath = str(reports / "report.html")
        config.option.self_contained_html = True


def failure_message(entry: Rule, o: Mapping[str, Any], scope_option: str | None = None) -> str:
    """The first line starts with the count (JUnit shows it as the failure message); then what to do,
    the ids and the SQL that reproduces them."""
    sample = o["sample"]
    described = {r["id"]: ", ".join(f"{k} {v}" for k, v in r.items() if k != "id") for r in o.get("sample_rows") or ()}
    shown = ", ".join(f"{pk} ({described[pk]})" if described.get(pk) else str(pk) for pk in sample)
    more = f" (first {len(sample)})" if len(sample) < o["violations"] else ""
    first = f"{o['violations']} violating {entry.table} of {o['checked']} checked"
    if o.get("new") is not None:
        first = f"{o['new']} new violating {entry.table} ({o['violations']} now, {o['baseline']} in the baseline)"
    if o.get("threshold"):
        first += f" ({o['threshold']})"
    lines = [f"{first}: {entry.id} {entry.name}", what_to_do(entry, o, scope_option)]
    if o.get("journal"):
        lines.append(f"journal: {o['journal']} ({journaled(o['journaled'])})")
    if o.get("new_ids"):
        lines.append(f"new ids: {', '.join(map(str, o['new_ids']))}")
    lines.append(f"ids{more}: {shown}")
    lines += blame.record_lines(o, entry.table)
    lines.append(f"reproduce: {o['sql']};")
    return "\n".join(lines)


def command() -> str:
    """How the user started the suite: ``pytest invariants`` in a checkout, ``antenna-invariants`` installed."""
    return "pytest invariants" if IN_CHECKOUT else "antenna-invariants"


def repair_command(rule_id: str, project: str, scope_option: str | None = None) -> str:
    """The exact line that repairs this rule in this case's scope (``scope_option``: the run's own scope option
    when it pins one, ``--job 12``, ``--occurrence 1,2``, which the repair keeps)."""
    own = f"--project {project.removeprefix('project')}" if project.startswith("project") else "--all-projects"
    scope = scope_option or own
    return f"{command()} -m {rule_id} {scope} --repair"


def what_to_do(entry: Rule, o: Mapping[str, Any], scope_option: str | None = None) -> str:
    if o.get("remaining") is not None:
        limited = f" ({o['beyond_limit']} left alone by --repair-limit)" if o.get("beyond_limit") else ""
        return (f"repair: {o['fixed']} fixed, {o['unfixable']} unfixable, {o.get('changed_under_repair', 0)} changed "
                f"under the repair, {o['remaining']} remaining{limited}")
    if entry.repair_func is None:
        return f"no automatic repair: {entry.hint or 'investigate the rows below'}"
    if entry.is_global:
        return global_repair(entry)
    run = repair_command(entry.id, o["project"], scope_option)
    if entry.deletes:
        return f"repair DELETES the violating {entry.table} (journaled, undoable): {run}"
    return f"repair (journaled, undoable): {run}"


def global_repair(entry: Rule) -> str:
    """Why a global rule's repair waits for --all-projects, and the command that runs it."""
    return (f"a repair exists; {entry.model._meta.db_table} is shared by every project, so only an unscoped run "
            f"repairs it: {command()} -m {entry.id} --repair --all-projects")


def journaled(tally: dict[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in tally.items())


def totals(outcomes: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    keys = ("checked", "violations", "fixed", "unfixable", "changed_under_repair")
    sums = {k: sum(o.get(k) or 0 for o in outcomes) for k in keys}
    statuses = {s.value: sum(o["status"] == s for o in outcomes) for s in Status}
    return {"cases": len(outcomes), "failing": sum(o["fails_run"] for o in outcomes)} | statuses | sums


def verdict(outcomes: Sequence[Mapping[str, Any]], exitstatus: int = 0) -> str:
    """The last line of a run: do violations remain?  Never all clear when the run did not end cleanly."""
    t = totals(outcomes)
    if t["failing"]:
        errors = f", {t['error']} could not run" if t["error"] else ""
        return (
            f"VIOLATIONS REMAIN: {t['failing']} failing rule x project case(s){errors}; "
            f"{t['violations']} violating rows in all (run failed)"
        )
    if exitstatus != 0:
        return f"NOT ALL CLEAR: no case failed, but the run ended with exit code {int(exitstatus)} (see above)"
    tolerated = sum(o["violations"] for o in outcomes if o["status"] != Status.REPAIRED)
    if tolerated:
        return (
            f"NO FAILING VIOLATIONS; {tolerated} tolerated violating rows remain "
            f"({t['warned']} warned, {t['baselined']} baselined, the rest within thresholds)"
        )
    return "NO VIOLATIONS REMAIN: every selected rule holds"


def signed(value: int | None) -> str:
    return "" if value is None else f"{value:+d}"


def quiet_failures(terminal: pytest.TerminalReporter) -> None:
    """The summary table and the first failures in full replace pytest's failure sections (reports: all)."""
    terminal.summary_failures = terminal.summary_errors = lambda: None  # type: ignore[method-assign]
    terminal.reportchars = ""


def terminal_summary(
    terminal: pytest.TerminalReporter, outcomes: Sequence[Mapping[str, Any]], rules: Mapping[str, Rule], reports: Path,
    detailed: bool, exitstatus: int = 0, scope_option: str | None = None,
) -> None:
    """One ranked table of rules and the first failures in full; ``detailed`` (-v, -rA): one line per case,
    pytest printing every failure as well."""
    terminal.section("antenna invariants")
    ranked = summary.terminal_table(terminal, outcomes, reports)
    if detailed:
        case_lines(terminal, outcomes)
    else:
        summary.first_failures(terminal, ranked, lambda o: details(rules[o["rule"]], o, scope_option), reports)
    t = totals(outcomes)
    terminal.write_line(
        f"rules x scopes: {t['cases']}; rows checked {t['checked']}, violating {t['violations']}, "
        f"fixed {t['fixed']}, unfixable {t['unfixable']}, changed under the repair {t['changed_under_repair']}"
    )
    terminal.write_line(f"reports: {reports / 'invariants.json'}, {reports / 'summary.md'}")
    todo = followups(outcomes)
    if todo:
        terminal.section("after this repair, in Antenna")
        for line in todo:
            terminal.write_line(f"- {line}")
    clear = not t["failing"] and exitstatus == 0
    terminal.write_line(verdict(outcomes, exitstatus), bold=True, red=not clear, green=clear)


def details(entry: Rule, o: Mapping[str, Any], scope_option: str | None = None) -> str:
    """A case's full text: the failure message, or why it could not run."""
    if o["status"] == Status.ERROR:
        return f"{entry.id} could not run: {o['message']}"
    # the message: a refused repair
    return "\n".join(filter(None, [failure_message(entry, o, scope_option), o.get("message")]))


def case_lines(terminal: pytest.TerminalReporter, outcomes: Sequence[Mapping[str, Any]]) -> None:
    interesting = [o for o in outcomes if o["status"] not in ("passed", "skipped") or o["violations"]]
    for o in sorted(interesting, key=lambda o: (not o["fails_run"], o["rule"], o["project"])):
        extra = (f"  fixed {o['fixed']}, unfixable {o['unfixable']}, changed under the repair "
                 f"{o['changed_under_repair']}") if o["remaining"] is not None else ""
        if o.get("journaled"):
            extra += f"  (journal: {journaled(o['journaled'])})"
        if o.get("new") is not None:
            extra += f"  new {o['new']} (baseline {o['baseline']})"
        if o.get("delta") is not None:
            extra += f"  {signed(o['delta'])} since the previous run"
        status = "TOLERATED" if o["status"] == "passed" else o["status"].upper()
        terminal.write_line(
            f"{status:9} {o['rule']:4} {o['project']:12} {o['violations']:>8} violating / "
            f"{o['checked']} checked{extra}"
        )


SCHEMA_VERSION = 2
# what the record of a case without violations keeps (docs/reports.md): a run of many projects is mostly such cases
QUIET = ("rule", "project", "status", "fails_run", "violations", "checked")


def json_record(o: Mapping[str, Any]) -> dict[str, Any]:
    """A case's record in invariants.json: in full when it has violations or something else to say; a case
    that passed without a violation keeps its counts (and its ``delta``), no SQL, no sample, no rule fields."""
    if o["status"] == "passed" and not o["violations"]:
        return {k: o[k] for k in QUIET} | ({"delta": o["delta"]} if o.get("delta") is not None else {})
    return {k: v for k, v in o.items() if k != "fingerprint"}


def rule_record(entry: Rule, sql: str | None) -> dict[str, Any]:
    """A rule in invariants.json's ``rules``: what every record of it shares, and its SQL over the whole run
    (a record with violations has its own, narrowed to its project)."""
    return describe(entry) | {"severity": entry.severity.value, "threshold": entry.threshold, "sql": sql}


def write_summary(path: Path, outcomes: Sequence[Mapping[str, Any]], run: dict[str, Any]) -> None:
    """reports/summary.md, for $GITHUB_STEP_SUMMARY and merge-request comments."""
    path.write_text(summary.markdown(outcomes, run, verdict(outcomes)), encoding="utf-8")


def write_json(path: Path, outcomes: Sequence[Mapping[str, Any]], run: dict[str, Any],
               rules: dict[str, dict[str, Any]] | None = None) -> None:
    """reports/invariants.json: the documented, versioned record of a run (docs/reports.md); ``rules``: the
    ``rule_record`` of each rule the run checked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = totals(outcomes)
    document = {
        "schema_version": SCHEMA_VERSION,
        "run": run,
        "totals": t,
        "violations_remain": bool(t["failing"]),
        "rules": rules or {},
    }
    results = sorted(outcomes, key=lambda o: (o["rule"], o["project"]))
    temp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with temp.open("w", encoding="utf-8") as out:
            out.writelines(_json_text(document, "results", map(json_record, results)))
        os.replace(temp, path)  # a full disk leaves the previous report whole
    except OSError as exc:
        temp.unlink(missing_ok=True)
        exc.filename = str(path)
        raise


def _json_text(document: dict[str, Any], key: str, items: Iterable[dict[str, Any]]) -> Iterator[str]:
    """``json.dumps(document | {key: list(items)}, indent=1, default=str) + "\\n"``, piece by piece: a run of
    many projects has tens of thousands of records, and the whole text at once cost more memory than the run's
    records themselves (docs/benchmarks.md, figure 6).  ``key`` is the document's last key."""
    encoder = json.JSONEncoder(indent=1, default=str)  # json.dumps(..., indent=1, default=str), made once
    head = encoder.encode(document | {key: []})
    empty = f'\n "{key}": []\n}}'
    if not head.endswith(empty):  # cannot happen: the shape json.dumps gives a dict's last, empty list
        raise AssertionError(f"unexpected JSON layout: {head[-40:]!r}")
    yield head.removesuffix(empty) + f'\n "{key}": ['
    separator = "\n  "
    for item in items:
        # a JSON string never holds a raw newline: each line of the item moves two spaces in, as in the list
        yield separator + encoder.encode(item).replace("\n", "\n  ")
        separator = ",\n  "
    yield ("\n ]\n}\n" if separator != "\n  " else "]\n}\n")


def describe(entry: Rule) -> dict[str, Any]:
    """What a JSON record says about its rule (docs/reports.md)."""
    risk = {"L": "low", "M": "medium", "H": "high"}.get(entry.risk)
    return {"title": entry.title, "table": entry.model._meta.db_table, "risk": risk,
            "repairable": entry.repair_func is not None, "deletes": entry.deletes, "docs": entry.anchor}


def _report_writers(config: pytest.Config) -> Iterator[tuple[object, str]]:
    """pytest's JUnit writer and pytest-html's report (each with the attribute that holds its path)."""
    xml = config.stash.get(xml_key, None)
    if xml is not None:
        yield xml, "logfile"
    for plugin in config.pluginmanager.get_plugins():
        if type(plugin).__module__.startswith("pytest_html.") and hasattr(plugin, "_report_path"):
            yield plugin, "_report_path"


def settle(config: pytest.Config, staged: dict[str, str], checked: bool) -> None:
    """Published reports are named by their final paths in the terminal; a run that checked nothing unregisters
    the writers, so no "generated" line names a report that was not written."""
    finals = {os.path.abspath(temp): final for final, temp in staged.items()}
    for writer, attribute in list(_report_writers(config)):
        if not checked:
            config.pluginmanager.unregister(writer)
            if attribute == "logfile":
                del config.stash[xml_key]
            continue
        final = finals.get(os.path.abspath(getattr(writer, attribute)))
        if final is not None:
            setattr(writer, attribute, os.path.abspath(final) if attribute == "logfile" else Path.cwd() / final)

