"""The HTML report (pytest-html 4 hooks): a title naming the database and scope, a rules x projects matrix and
a chart of violations per rule at the top, the rule's numbers as columns, and per failing row a collapsed
detail with links into Antenna, the repair hint and the SQL.

The report stays one self-contained file of bounded size: every case is a cell of the matrix, but the results
table lists at most ``MAX_ROWS`` cases; when a run has more cases than that, passing cases appear in the
matrix only, and failing cases beyond the cap are counted in a note (invariants.json has them all).
"""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from antenna_invariants import blame, reporting
from antenna_invariants.connection import mask
from antenna_invariants.errors import ConfigError
from antenna_invariants.results import cases_of
from antenna_invariants.rules import Rule, Status

MAX_ROWS = 1000
SHOWN_DETAILS = 20  # a test per rule: the cases whose details its row shows (failing cases first)
STATUS_CLASS = {
    Status.PASSED: "p", Status.FAILED: "f", Status.WARNED: "w", Status.REPAIRED: "r", Status.BASELINED: "b",
    Status.ERROR: "e", Status.SKIPPED: "s",
}
# Antenna's pages per table (its API where the UI has no page, or for rows without a project)
UI_PATHS = {
    "occurrences": "projects/{project}/occurrences/{id}",
    "events": "projects/{project}/sessions/{id}",
    "deployments": "projects/{project}/deployments/{id}",
    "collections": "projects/{project}/collections/{id}",
    "jobs": "projects/{project}/jobs/{id}",
    "taxa": "projects/{project}/taxa/{id}",
}
API_PATHS = {"algorithms": "api/v2/ml/algorithms/{id}/"}
STYLE = """<style>
.inv-top{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}
.inv-matrix{overflow:auto;max-height:40em;max-width:100%}.inv-matrix table{border-collapse:collapse;font-size:11px}
.inv-matrix td,.inv-matrix th{border:1px solid #fff;padding:1px 4px;text-align:right;min-width:1.5em;color:#000}
.inv-matrix th{position:sticky;top:0;background:#eee}.inv-matrix th:first-child{left:0;z-index:1}
.inv-matrix td.rule{position:sticky;left:0;background:#eee;text-align:left;font-weight:bold}
.inv-top .p{background:#cfc}.inv-top .f{background:#f99}.inv-top .w{background:#fe8}.inv-top .r{background:#9cf}
.inv-top .b{background:#ccc}.inv-top .e{background:#c9f}.inv-top .s{background:#f4f4f4}
.inv-legend span{padding:0 .5em;margin-right:.3em;color:#000}.inv p{margin:.2em 0}
.inv pre{white-space:pre-wrap;background:#f6f6f6;padding:.3em}
.inv-origins{border-collapse:collapse;font-size:12px;margin:.3em 0}
.inv-origins td,.inv-origins th{border:1px solid #ddd;padding:1px 4px}
</style>"""


def antenna_url(url: str | None) -> str | None:
    """``--antenna-url``: an http(s) address (it goes unquoted into links, so nothing that could end one),
    without the ``user:password@`` it may carry: credentials never reach a link or a report."""
    if url is None:
        return None
    if not re.fullmatch(r"https?://[^\s\"'<>`=]+", url):
        expected = "expected an http(s) address like https://antenna.example.org"
        raise ConfigError(mask(f"--antenna-url {url!r}: {expected}", url))
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def project_of(label: str) -> str | None:
    return label.removeprefix("project") if label.startswith("project") else None


def link(base: str | None, table: str, label: str, pk: int) -> str:
    """A sample id as a link into Antenna's UI (its API for tables without a page, or rows without a project)."""
    if not base:
        return str(pk)
    project = project_of(label)
    path = UI_PATHS.get(table) if project else None
    path = path or API_PATHS.get(table) or f"api/v2/{table}/{{id}}/"
    return f"<a href={base.rstrip('/')}/{path.format(project=project, id=pk)}>{pk}</a>"


def text(value: str) -> str:
    """Escaped for element content (quotes need no escaping there, and SQL is full of them)."""
    return escape(value, quote=False)


def origins_table(record: Mapping[str, Any], base: str | None, table: str) -> str:
    """report.html: a case's per-job breakdown (most likely origins), with links to the jobs in Antenna;
    ``table`` is the rule's table (``occurrences``) that the sample ids link into."""
    attribution = record.get("attribution") or {}
    if not attribution:
        return ""
    if not attribution.get("attributable") or attribution.get("reason", "").startswith("not attributed ("):
        return f"<p>origin: {text(attribution.get('reason', ''))}</p>"
    rows = []
    for o in record.get("origins") or ():
        ids = ", ".join(link(base, table, record["project"], pk) for pk in o["sample"])
        if o["job"] is None:
            written = blame.span(o["first_row"], o["last_row"])
            rows.append(f"<tr><td>unattributed</td><td colspan=4>{text(written)}</td>"
                        f"<td>none</td><td>{o['rows']}</td><td>{ids}</td><td>{text(o['reason'])}</td></tr>")
            continue
        job = link(base, "jobs", f"project{o['project']}", o["job"])
        end = "" if o["window_end"] == "finished_at" else " (never finished: last update)"
        window = blame.span(*o["window"]) + end
        rows.append(
            f"<tr><td>job {job}</td><td>{text(o['type'] or '')}</td><td>{text(o['status'] or '')}</td>"
            f"<td>{text(o['pipeline'] or '')}</td><td>{text(window)}</td><td>{o['confidence']}</td>"
            f"<td>{o['rows']}</td><td>{ids}</td><td>{text(o['reason'])}</td></tr>"
        )
    head = ("<tr><th>most likely origin</th><th>type</th><th>status</th><th>pipeline</th><th>window</th>"
            "<th>confidence</th><th>rows</th><th>ids</th><th>why</th></tr>")
    notes = [attribution.get("reason")] + [blame.appeared_line(attribution, record["table"])]
    notes_html = "".join(f"<p>{text(n)}</p>" for n in notes if n)
    return f"<table class=inv-origins>{head}{''.join(rows)}</table>{notes_html}"


def padded(value: int | None) -> str:
    """A number whose text sorts like the number (pytest-html sorts columns as strings)."""
    if value is None:
        return ""
    return f"<i hidden>{value + 10**9:011d}</i>{value}"


def signed(value: int | None) -> str:
    return "" if value is None else f"{value:+d}"


WORST_FIRST = (Status.ERROR, Status.FAILED, Status.WARNED, Status.BASELINED, Status.REPAIRED, Status.PASSED,
               Status.SKIPPED)


def combined(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A test per rule's row: its cases' worst status and their numbers summed (each case has its matrix cell)."""
    def total(key: str) -> int | None:
        values: list[int] = [r[key] for r in records if r.get(key) is not None]
        return sum(values) if values else None

    statuses = {r["status"] for r in records}
    return {
        "rule": records[0]["rule"], "project": f"{len(records)} projects",
        "status": next(status for status in WORST_FIRST if status in statuses),
        **{key: total(key) or 0 for key in ("violations", "fixed", "unfixable", "changed_under_repair")},
        "delta": total("delta"),
    }


def _rule_key(rule_id: str) -> tuple[str, int, str]:
    found = re.fullmatch(r"([A-Z]+)(\d*)(\w*)", rule_id)
    if found is None:  # not a rule id (A1, K4b): after the rules
        return "~", 0, rule_id
    letters, number, suffix = found.groups()
    return letters, int(number or 0), suffix


def _project_key(label: str) -> tuple[int, int, str]:
    project = project_of(label)
    return (0, int(project), "") if project and project.isdigit() else (1, 0, label)


class HtmlReport:
    """pytest-html hooks, registered by the plugin in an invariants session."""

    def __init__(
        self, title: str, rules: Mapping[str, Rule], outcomes: Sequence[Mapping[str, Any]], *,
        antenna_url: str | None = None, compare: bool = False, planned: int = 0, scope_option: str | None = None,
        config: pytest.Config | None = None,
    ) -> None:
        """``outcomes``: the run's records, filled in as the cases report (``results.Results.records``)."""
        self.title, self.rules, self.outcomes, self.config = title, rules, outcomes, config
        self.scratch: list[dict[str, Any]] | None = None  # pytest-html's per-test scratch (_reports)
        self.antenna_url, self.compare, self.scope_option = antenna_url, compare, scope_option
        self.passing_rows = planned <= MAX_ROWS
        self.listed = self.omitted = 0

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> Generator[None, None, None]:
        """pytest-html keeps a test's reports in ``_reports`` (its reruns' scratch) to the end of the session,
        though it reads them only while the test's teardown report is processed (pytest-html 4.1, 4.2): once
        every plugin has seen that report, they are dropped, 0.6 KB a case (docs/benchmarks.md, figure 6).  The
        reports themselves stay where pytest keeps them; nothing pytest-html writes changes."""
        yield
        if report.when == "teardown" and str(report.outcome) != "rerun":  # pytest-rerunfailures' outcome
            for scratch in self._scratch():
                scratch.pop(report.nodeid, None)

    def _scratch(self) -> list[dict[str, Any]]:
        if self.scratch is None:  # pytest-html registers its report after our configure
            plugins = self.config.pluginmanager.get_plugins() if self.config is not None else ()
            self.scratch = [p._reports for p in plugins if type(p).__module__.startswith("pytest_html.")
                            and isinstance(getattr(p, "_reports", None), dict)]
        return self.scratch

    def pytest_html_report_title(self, report: Any) -> None:  # pytest-html's report object
        report.title = self.title

    def columns(self) -> list[tuple[str, str, bool]]:
        delta = [("delta", "Δ since previous", True)] if self.compare else []
        return [
            ("rule", "Rule", True),
            ("project", "Project", True),
            ("status", "Status", True),
            ("violations", "Violations", True),
            *delta,
            ("fixed", "Fixed", False),
            ("unfixable", "Unfixable", False),
            ("changed_under_repair", "Changed under repair", False),
        ]

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells[2:2] = [
            f'<th class="sortable" data-column-type="{key}">{title}</th>' if sortable else f"<th>{title}</th>"
            for key, title, sortable in self.columns()
        ]

    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        records = cases_of(report)
        if not records:
            return
        data = records[0] if len(records) == 1 else combined(records)
        if (data["status"] == Status.PASSED and not self.passing_rows) or self.listed >= MAX_ROWS:
            self.omitted += data["status"] != Status.PASSED
            cells.clear()
            return
        self.listed += 1
        values = {
            "rule": data["rule"],
            "project": data["project"],
            "status": data["status"].upper(),
            "violations": padded(data["violations"]),
            "delta": padded(data.get("delta")),
            "fixed": data["fixed"],
            "unfixable": data["unfixable"],
            "changed_under_repair": data.get("changed_under_repair", 0),
        }
        cells[2:2] = [f"<td class=col-{key}>{values[key]}</td>" for key, _, _ in self.columns()]

    def pytest_html_results_table_html(self, report: pytest.TestReport, data: list[str]) -> None:
        cases = cases_of(report)
        if not cases or (len(cases) == 1 and cases[0]["status"] == Status.ERROR):
            return  # pytest-html's own text: why it could not run
        shown = sorted((r for r in cases if r["status"] != Status.ERROR and r["violations"]),
                       key=lambda r: not r["fails_run"])  # a test per rule: its failing cases first
        more = len(shown) - SHOWN_DETAILS
        note = [f"<p>... and {more} more cases with violations (invariants.json has them all)</p>"] * (more > 0)
        errors = data if any(r["status"] == Status.ERROR for r in cases) else []
        named = len(cases) > 1  # a test per rule: each case's detail under its project
        data[:] = errors + [(f"<h4>{text(r['project'])}</h4>" if named else "") + self.detail(r)
                            for r in shown[:SHOWN_DETAILS]] + note

    def detail(self, o: Mapping[str, Any]) -> str:
        entry = self.rules[o["rule"]]
        head = f"{o['violations']} violating {entry.table} of {o['checked']} checked"
        if o.get("new") is not None:
            head += f", {o['new']} new (baseline: {o['baseline']})"
        if o.get("delta") is not None:
            head += f", {signed(o['delta'])} since the previous run"
        ids = " ".join(link(self.antenna_url, entry.table, o["project"], pk) for pk in o["sample"])
        shown = f"first {len(o['sample'])}" if len(o["sample"]) < o["violations"] else "all"
        rows = "".join(f"<br>{text(str(r))}" for r in o.get("sample_rows") or ())
        hint = reporting.what_to_do(entry, o, self.scope_option)
        origins = origins_table(o, self.antenna_url, entry.table)
        return (
            f"<div class=inv><p><b>{text(head)}</b>: {text(entry.doc)}</p><p>What to do: {text(hint)}</p>"
            f"<p>Ids ({shown}): {ids}{rows}</p>{origins}<p>Reproduce:</p><pre>{text(o['sql'])};</pre></div>"
        )

    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
    ) -> None:
        verdict = escape(reporting.verdict(self.outcomes))
        top = f"<div class=inv-top><div>{self.matrix()}</div><div>{self.chart()}</div></div>"
        prefix.extend([STYLE, f"<p><b>{verdict}</b></p>{top}"])
        if self.omitted or not self.passing_rows:
            passing = "" if self.passing_rows else f"more than {MAX_ROWS} cases: passing cases are in the matrix only; "
            beyond = ""
            if self.omitted:
                beyond = f"{self.omitted} more non-passing cases are not listed (see invariants.json)"
            prefix.append(f"<p><b>The table below:</b> {passing}{beyond}</p>")

    def per_rule(self) -> dict[str, dict[str, Any]]:
        rules: dict[str, dict[str, Any]] = {}
        for o in self.outcomes:
            r = rules.setdefault(o["rule"], {"violations": 0, "delta": None, "failing": False})
            r["violations"] += o["violations"]
            r["failing"] |= o["fails_run"]
            if o.get("delta") is not None:
                r["delta"] = (r["delta"] or 0) + o["delta"]
        return dict(sorted(rules.items(), key=lambda item: _rule_key(item[0])))

    def chart(self) -> str:
        """Violations per rule as an inline SVG bar chart (rules without violations are left out)."""
        rules = {k: v for k, v in self.per_rule().items() if v["violations"]}
        if not rules:
            return "<p>No violations.</p>"
        top = max(r["violations"] for r in rules.values())
        bars = []
        for i, (rule_id, r) in enumerate(rules.items()):
            y, width = i * 13, max(2, round(300 * r["violations"] / top))
            colour = "#d33" if r["failing"] else "#e90"
            delta = f" ({signed(r['delta'])})" if r["delta"] is not None else ""
            bars.append(
                f'<text x="0" y="{y + 10}">{escape(rule_id)}</text>'
                f'<rect x="40" y="{y + 1}" width="{width}" height="11" fill="{colour}"/>'
                f'<text x="{46 + width}" y="{y + 10}">{r["violations"]}{delta}</text>'
            )
        height = 13 * len(rules)
        return (
            f'<h3>Violations per rule</h3><svg xmlns="http://www.w3.org/2000/svg" width="450" height="{height}" '
            f'font-size="11" font-family="sans-serif" role="img" aria-label="violations per rule">{"".join(bars)}</svg>'
        )

    def matrix(self) -> str:
        """Rules x projects; each cell coloured by status and showing the violation count (and delta)."""
        projects = sorted({o["project"] for o in self.outcomes}, key=_project_key)
        cells = {(o["rule"], o["project"]): o for o in self.outcomes}
        head = "".join(f"<th title={escape(p)}>{escape(project_of(p) or p)}</th>" for p in projects)
        rows = []
        for rule_id, total in self.per_rule().items():
            tds = []
            for p in projects:
                o = cells.get((rule_id, p))
                if o is None:
                    tds.append("<td></td>")
                    continue
                delta = f" ({signed(o['delta'])})" if o.get("delta") else ""
                count = f"{o['violations']}{delta}" if o["violations"] or delta else ""
                # most cells of a big run: rule and project are the headers
                if not count and o["status"] == Status.PASSED:
                    tds.append("<td class=p></td>")
                    continue
                tds.append(f"<td class={STATUS_CLASS[o['status']]} title='{rule_id} {p} {o['status']}'>{count}</td>")
            delta = f" ({signed(total['delta'])})" if total["delta"] is not None else ""
            total_td = f"<td>{total['violations']}{delta}</td>"
            rows.append(f"<tr><td class=rule>{escape(rule_id)}</td>{''.join(tds)}{total_td}</tr>")
        legend = "".join(f"<span class={c}>{s}</span>" for s, c in STATUS_CLASS.items())
        return (
            f"<h3>Rules x projects</h3><p class=inv-legend>{legend}</p><div class=inv-matrix><table>"
            f"<tr><th>rule</th>{head}<th>total</th></tr>{''.join(rows)}</table></div>"
        )
