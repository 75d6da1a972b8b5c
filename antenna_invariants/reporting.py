"""Outcomes out: failure messages, the terminal summary and reports/invariants.json (the HTML is html.py)."""

from __future__ import annotations

import io
import json
import os
import tempfile
import traceback
from pathlib import Path

from antenna_invariants.connection import ConfigError
from antenna_invariants.followups import followups

OUTCOMES: list[dict] = []
PREVIOUS: dict[str, int] | None = None  # rule/project -> violations of --compare's run


def ensure_writable(directory: Path, option: str = "--reports"):
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
        value.name
        for frame, _ in traceback.walk_tb(exc.__traceback__)
        for value in frame.f_locals.values()
        if isinstance(value, io.IOBase) and isinstance(getattr(value, "name", None), str)
    ]
    return names[-1] if names else None


def stage(config) -> dict[str, str]:
    """Point JUnit and HTML at a file beside each report (``{final: staged}``): ``publish`` renames them into
    place only when the run checked something, so a run that checked nothing (exit 4 or 5) or a full disk
    leaves the previous reports as they were.  A path that is not a regular file (a device) is written as is."""
    staged = {}
    for option in ("xmlpath", "htmlpath"):
        final = getattr(config.option, option, None)
        if final and (not os.path.exists(final) or os.path.isfile(final)):
            directory, name = os.path.split(final)
            staged[final] = os.path.join(directory, f".{name}.{os.getpid()}.partial")
            setattr(config.option, option, staged[final])
    return staged


def publish(staged: dict[str, str], checked: bool):
    """Rename the staged reports into place (``checked``), or remove them."""
    for final, temp in staged.items():
        if checked and os.path.exists(temp):
            os.replace(temp, final)
        else:
            Path(temp).unlink(missing_ok=True)


def default_report_paths(config, reports: Path):
    """JUnit XML and HTML go to the reports directory unless the user chose other paths."""
    if getattr(config.option, "xmlpath", None) is None:
        config.option.xmlpath = str(reports / "junit.xml")
    if hasattr(config.option, "htmlpath") and config.option.htmlpath is None:
        config.option.htmlpath = str(reports / "report.html")
        config.option.self_contained_html = True


def failure_message(entry, o: dict) -> str:
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
    lines = [f"{first}: {entry.id} {entry.name}", what_to_do(entry, o)]
    if o.get("journal"):
        lines.append(f"journal: {o['journal']} ({journaled(o['journaled'])})")
    if o.get("new_ids"):
        lines.append(f"new ids: {', '.join(map(str, o['new_ids']))}")
    lines.append(f"ids{more}: {shown}")
    lines.append(f"reproduce: {o['sql']};")
    return "\n".join(lines)


SCOPE: str | None = None  # the run's own scope option when it pins one (``--job 12``, ``--occurrence 1,2``)


def command() -> str:
    """How the user started the suite: ``pytest invariants`` in a checkout, ``antenna-invariants`` installed."""
    from antenna_invariants.layout import IN_CHECKOUT

    return "pytest invariants" if IN_CHECKOUT else "antenna-invariants"


def repair_command(rule_id: str, project: str) -> str:
    """The exact line that repairs this rule in this case's scope (a scope the run was given is kept)."""
    scope = SCOPE or (f"--project {project.removeprefix('project')}" if project.startswith("project") else "--all-projects")
    return f"{command()} -m {rule_id} {scope} --repair"


def what_to_do(entry, o: dict) -> str:
    if o.get("remaining") is not None:
        limited = f" ({o['beyond_limit']} left alone by --repair-limit)" if o.get("beyond_limit") else ""
        return (f"repair: {o['fixed']} fixed, {o['unfixable']} unfixable, {o.get('changed_under_repair', 0)} changed "
                f"under the repair, {o['remaining']} remaining{limited}")
    if entry.repair_func is None:
        return f"no automatic repair: {entry.hint or 'investigate the rows below'}"
    if entry.is_global:
        return global_repair(entry)
    run = repair_command(entry.id, o["project"])
    if entry.deletes:
        return f"repair DELETES the violating {entry.table} (journaled, undoable): {run}"
    return f"repair (journaled, undoable): {run}"


def global_repair(entry) -> str:
    """Why a global rule's repair waits for --all-projects, and the command that runs it."""
    return (f"a repair exists; {entry.model._meta.db_table} is shared by every project, so only an unscoped run "
            f"repairs it: {command()} -m {entry.id} --repair --all-projects")


def journaled(tally: dict[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in tally.items())


def totals() -> dict[str, int]:
    keys = ("checked", "violations", "fixed", "unfixable", "changed_under_repair")
    sums = {k: sum(o.get(k) or 0 for o in OUTCOMES) for k in keys}
    statuses = {s: sum(o["status"] == s for o in OUTCOMES) for s in STATUSES}
    return {"cases": len(OUTCOMES), "failing": sum(o["fails_run"] for o in OUTCOMES)} | statuses | sums


STATUSES = ("passed", "failed", "warned", "repaired", "baselined", "error", "skipped")


def verdict(t: dict[str, int], exitstatus: int = 0) -> str:
    """The last line of a run: do violations remain?  Never all clear when the run did not end cleanly."""
    if t["failing"]:
        errors = f", {t['error']} could not run" if t["error"] else ""
        return (
            f"VIOLATIONS REMAIN: {t['failing']} failing rule x project case(s){errors}; "
            f"{t['violations']} violating rows in all (run failed)"
        )
    if exitstatus != 0:
        return f"NOT ALL CLEAR: no case failed, but the run ended with exit code {int(exitstatus)} (see above)"
    tolerated = sum(o["violations"] for o in OUTCOMES if o["status"] != "repaired")
    if tolerated:
        return (
            f"NO FAILING VIOLATIONS; {tolerated} tolerated violating rows remain "
            f"({t['warned']} warned, {t['baselined']} baselined, the rest within thresholds)"
        )
    return "NO VIOLATIONS REMAIN: every selected rule holds"


def signed(value: int | None) -> str:
    return "" if value is None else f"{value:+d}"


def terminal_summary(terminal, reports: Path, detailed: bool, exitstatus: int = 0):
    """One ranked table of rules and the first failures in full; ``detailed`` (-v, -rA): one line per case,
    pytest printing every failure as well."""
    from antenna_invariants import summary
    from antenna_invariants.rules import RULES

    terminal.section("antenna invariants")
    ranked = summary.terminal_table(terminal, OUTCOMES, reports)
    if detailed:
        case_lines(terminal)
    else:
        summary.first_failures(terminal, ranked, lambda o: details(RULES[o["rule"]], o), reports)
    t = totals()
    terminal.write_line(
        f"rules x scopes: {t['cases']}; rows checked {t['checked']}, violating {t['violations']}, "
        f"fixed {t['fixed']}, unfixable {t['unfixable']}, changed under the repair {t['changed_under_repair']}"
    )
    terminal.write_line(f"reports: {reports / 'invariants.json'}, {reports / 'summary.md'}")
    todo = followups(OUTCOMES)
    if todo:
        terminal.section("after this repair, in Antenna")
        for line in todo:
            terminal.write_line(f"- {line}")
    clear = not t["failing"] and exitstatus == 0
    terminal.write_line(verdict(t, exitstatus), bold=True, red=not clear, green=clear)


def details(entry, o: dict) -> str:
    """A case's full text: the failure message, or why it could not run."""
    if o["status"] == "error":
        return f"{entry.id} could not run: {o['message']}"
    return "\n".join(filter(None, [failure_message(entry, o), o.get("message")]))  # the message: a refused repair


def case_lines(terminal):
    interesting = [o for o in OUTCOMES if o["status"] not in ("passed", "skipped") or o["violations"]]
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


SCHEMA_VERSION = 1


def write_summary(path: Path, run: dict):
    """reports/summary.md, for $GITHUB_STEP_SUMMARY and merge-request comments."""
    from antenna_invariants import summary

    path.write_text(summary.markdown(OUTCOMES, run, verdict(totals())), encoding="utf-8")


def write_json(path: Path, run: dict):
    """reports/invariants.json: the documented, versioned record of a run (docs/reports.md)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = totals()
    document = {
        "schema_version": SCHEMA_VERSION,
        "run": run,
        "totals": t,
        "violations_remain": bool(t["failing"]),
        "results": [
            {k: v for k, v in o.items() if k != "fingerprint"}
            for o in sorted(OUTCOMES, key=lambda o: (o["rule"], o["project"]))
        ],
    }
    temp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        temp.write_text(json.dumps(document, indent=1, default=str) + "\n", encoding="utf-8")
        os.replace(temp, path)  # a full disk leaves the previous report whole
    except OSError as exc:
        temp.unlink(missing_ok=True)
        exc.filename = str(path)
        raise
