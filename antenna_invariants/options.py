"""The command line and ini of an invariants run: declared (``add_options``), then parsed and validated once
into a frozen ``RunOptions`` before anything connects.  Bad input is a ``ConfigError``: one line, exit 4."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from antenna_invariants import baseline, html, reporting, samples
from antenna_invariants.errors import ConfigError
from antenna_invariants.layout import REPORTS_DIR
from antenna_invariants.repair import Limits
from antenna_invariants.rules import Rule, Severity, valid_threshold
from antenna_invariants.scope import parse_age, parse_ids, parse_since, parse_timeout
from antenna_invariants.snapshot import kind as snapshot_kind

PER_RULE_ABOVE = 5000  # --tests-per auto: cases beyond which a run collects one test per rule (README, "Many projects")


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("antenna-invariants")
    group.addoption("--project", action="append", metavar="ID[,ID]", help="check these projects (repeatable)")
    group.addoption("--job", metavar="ID", help="check what this job could have written (inferred, see README)")
    group.addoption("--occurrence", action="append", metavar="ID[,ID]", help="check these occurrences only")
    group.addoption("--repair", action="store_true", help="repair failing rules that have a repair")
    group.addoption("--all-projects", action="store_true", help="allow --repair without a scope")
    group.addoption("--repair-limit", type=int, metavar="N", help="change at most N rows per rule and project")
    group.addoption(
        "--force", action="store_true", help="allow a repair to change more than invariants_repair_max_share"
    )
    group.addoption(
        "--statement-timeout", default="5min", metavar="DURATION",
        help="cancel any query running longer (PostgreSQL units: 500ms, 30s, 5min; 0 for none; default 5min)",
    )
    group.addoption(
        "--tests-per", choices=("case", "rule", "auto"), default="auto",
        help="one pytest test per rule x project (case) or per rule, covering its projects (rule); auto (default): "
        f"per rule when a run without -k, --deselect or a [case] node id plans more than {PER_RULE_ABOVE:,} cases",
    )
    group.addoption("--sample-size", type=int, default=20, metavar="N", help="ids shown per rule (0: all)")
    group.addoption("--reset-demo", action="store_true", help="rebuild the demo database")
    group.addoption(
        "--snapshot", metavar="FILE",
        help="check this pg_dump backup (.sql.gz, .sql or -Fc), restored into a scratch database",
    )
    group.addoption(
        "--keep-snapshot", action="store_true", help="keep the snapshot's scratch database (its URL is printed)"
    )
    group.addoption(
        "--since", metavar="WHEN",
        help="check only rows changed since WHEN (2026-11-01, 2026-11-01T06:00, 24h, 7d)",
    )
    parser.addini(
        "invariants_repair_max_share",
        default="10%",
        help="a repair changing more than this share of its table (and over 100 rows) needs --force",
    )
    parser.addini(
        "invariants_joblog_max_age",
        default="90d",
        help="job logs older than this (90d, 24h, 90min) violate JL1, and its repair deletes them",
    )
    parser.addini(
        "invariants_error_if",
        type="linelist",
        help='tolerated violations per rule, one "RULE >N" or "RULE >P%" per line (dbt\'s error_if)',
    )
    parser.addini(
        "invariants_warn_if", type="linelist",
        help='violations a rule lets pass without a warning, one "RULE >N" or "RULE >P%" per line (dbt\'s warn_if)',
    )
    parser.addini(
        "invariants_severity", type="linelist", help='severity per rule, one "RULE warn" or "RULE error" per line'
    )
    group.addoption("--reports", default=str(REPORTS_DIR), metavar="DIR", help="where reports and journals go")
    # reports (docs/reports.md)
    group.addoption("--antenna-url", metavar="URL", help="Antenna's web address: sample ids link into its UI")
    group.addoption(
        "--write-baseline", action="store_true", help="write the violations found to REPORTS/baseline.json"
    )
    group.addoption("--baseline", metavar="FILE", help="violations in this baseline do not fail; only new ones do")
    group.addoption("--compare", metavar="PREVIOUS.json", help="show each case's delta since this invariants.json")
    group.addoption(
        "--sample-columns", action="append", metavar="COL[,COL]", help="allowlisted columns shown with sample ids"
    )
    group.addoption(
        "--store-failures", metavar="DIR", help="write one CSV per failing rule x scope: ids and allowlisted columns"
    )


@dataclass(frozen=True)
class RuleSettings:
    """The ini's settings for rules, for this run: severities and thresholds by rule id, and the values of the
    rules' own settings (``invariants_<name>`` sets a rule's keyword-only parameter ``<name>``: JL1's
    ``joblog_max_age``).  ``configured`` gives the run's copies of the rules; the registry stays as declared."""

    severity: Mapping[str, Severity] = field(default_factory=dict)
    error_if: Mapping[str, str] = field(default_factory=dict)
    warn_if: Mapping[str, str] = field(default_factory=dict)
    joblog_max_age: timedelta = timedelta(days=90)

    def values(self) -> dict[str, Any]:
        """{setting name: this run's value}, for the rules that declare the setting."""
        return {"joblog_max_age": self.joblog_max_age}

    def configured(self, rules: Mapping[str, Rule]) -> dict[str, Rule]:
        """The run's rules: each declared rule, with the severity, thresholds and settings this run sets for it."""
        run, values = {}, self.values()
        for rule_id, entry in rules.items():
            changes: dict[str, Any] = {}
            for name, given in (("error_if", self.error_if), ("warn_if", self.warn_if), ("severity", self.severity)):
                if rule_id in given:
                    changes[name] = given[rule_id]
            settings = {name: values[name] for name in entry.settings if name in values}
            if settings and settings != {name: entry.settings[name] for name in settings}:
                changes["settings"] = MappingProxyType({**entry.settings, **settings})
            run[rule_id] = replace(entry, **changes) if changes else entry
        return run

    @classmethod
    def from_ini(cls, config: pytest.Config, rules: Mapping[str, Rule]) -> RuleSettings:
        error_if = dict(_thresholds(config.getini("invariants_error_if"), "error_if", rules))
        warn_if = dict(_thresholds(config.getini("invariants_warn_if"), "warn_if", rules))
        severity = {}
        for rule_id, value in _rule_lines(config.getini("invariants_severity"), "invariants_severity", rules):
            if value not in tuple(Severity):
                raise ConfigError(f"invariants_severity: {value!r} is not warn or error")
            severity[rule_id] = Severity(value)
        age = parse_age(config.getini("invariants_joblog_max_age"), "invariants_joblog_max_age")
        return cls(MappingProxyType(severity), MappingProxyType(error_if), MappingProxyType(warn_if), age)


def _thresholds(lines: list[str], name: str, rules: Mapping[str, Rule]) -> Iterator[tuple[str, str]]:
    """``"RULE >N"`` / ``"RULE >P%"`` lines (ini ``invariants_error_if``, ``invariants_warn_if``)."""
    for rule_id, threshold in _rule_lines(lines, f"invariants_{name}", rules):
        if not valid_threshold(threshold):
            raise ConfigError(f"invariants_{name}: {threshold!r} is not a threshold like >10 or >0.1%")
        yield rule_id, threshold


def _rule_lines(lines: list[str], option: str, rules: Mapping[str, Rule]) -> Iterator[tuple[str, str]]:
    for line in lines:
        rule_id, _, value = line.strip().partition(" ")
        if rule_id not in rules:
            raise ConfigError(f"{option}: no rule {rule_id!r}")
        yield rule_id, value.strip()


@dataclass(frozen=True)
class RunOptions:
    """Every option and ini value of an invariants run, parsed and validated."""

    rule_settings: RuleSettings
    repair: bool
    all_projects: bool  # also what lets a repair write global tables
    sample_size: int
    strict: bool
    projects: tuple[int, ...] | None
    job_id: int | None
    occurrence_ids: tuple[int, ...] | None
    since: datetime | None
    snapshot: Path | None
    keep_snapshot: bool
    reset_demo: bool
    statement_timeout: str
    limits: Limits
    reports: Path
    sample_columns: tuple[str, ...]
    antenna_url: str | None
    write_baseline: bool
    baseline: baseline.Baseline | None
    previous: Mapping[str, int] | None  # --compare: violations per rule/scope of the previous run
    store_failures: Path | None
    # --compare: per rule/scope, the previous run's sample, first_seen and start (the first run that saw an id)
    previous_records: Mapping[str, dict[str, Any]] | None = None
    detailed: bool = False  # -v, -rA or an explicit --tb: pytest's full output; by default the terminal fits a screen
    named: frozenset[str] = frozenset()  # the words of -m and -k (a --project run checks the global rules they name)
    tests_per: str = "case"  # --tests-per: "case", "rule", or "auto" (by the number of cases: Session.per_rule)

    @classmethod
    def from_config(cls, config: pytest.Config, rules: Mapping[str, Rule]) -> RunOptions:
        """Parse and validate, in the order the user reads them; ``rules``: the registry (the ini names rules)."""
        option = config.getoption
        rule_settings = RuleSettings.from_ini(config, rules)
        repair, sample_size = bool(option("repair")), option("sample_size")
        projects = parse_ids(option("project"), "--project")
        job_ids = parse_ids([option("job")], "--job") or (None,)
        if len(job_ids) > 1:
            raise ConfigError("--job takes one id")
        since = parse_since(option("since"))
        snapshot = Path(option("snapshot")) if option("snapshot") else None
        if snapshot is not None:
            snapshot_kind(snapshot)  # missing or not a backup: before any connection
        elif option("keep_snapshot"):
            raise ConfigError("--keep-snapshot needs --snapshot FILE")
        occurrence_ids = parse_ids(option("occurrence"), "--occurrence")
        if sample_size < 0:
            raise ConfigError("--sample-size must be 0 (all) or more")
        statement_timeout = parse_timeout(option("statement_timeout"))
        rows, share = option("repair_limit"), _share(config)
        if rows is not None and rows < 1:
            raise ConfigError("--repair-limit must be 1 or more")
        limits = Limits(rows=rows, share=None if option("force") else share)
        scoped = projects or job_ids[0] or occurrence_ids
        if repair and not scoped and not option("all_projects"):
            raise ConfigError("--repair needs a scope (--project, --job or --occurrence) or --all-projects")
        if repair and getattr(config.option, "numprocesses", None):
            raise ConfigError("--repair runs in one process (one journal, one transaction at a time): drop -n")
        reports = Path(option("reports"))
        reporting.ensure_writable(reports)
        # baseline, trend and sample columns (docs/reports.md)
        sample_columns = samples.parse_columns(option("sample_columns"))
        antenna_url = html.antenna_url(option("antenna_url"))
        known = baseline.Baseline(Path(option("baseline"))) if option("baseline") else None
        previous = baseline.previous_counts(Path(option("compare"))) if option("compare") else None
        records = baseline.previous_records(Path(option("compare"))) if option("compare") else None
        store_failures = Path(option("store_failures")) if option("store_failures") else None
        if store_failures is not None:
            reporting.ensure_writable(store_failures, "--store-failures")
        return cls(
            rule_settings=rule_settings, repair=repair, all_projects=bool(option("all_projects")),
            sample_size=sample_size, strict=_strict(config), projects=projects, job_id=job_ids[0],
            occurrence_ids=occurrence_ids, since=since, snapshot=snapshot, keep_snapshot=bool(option("keep_snapshot")),
            reset_demo=bool(option("reset_demo")), statement_timeout=statement_timeout, limits=limits,
            reports=reports, sample_columns=sample_columns, antenna_url=antenna_url,
            write_baseline=bool(option("write_baseline")), baseline=known,
            previous=MappingProxyType(previous) if previous is not None else None, store_failures=store_failures,
            previous_records=MappingProxyType(records) if records is not None else None,
            detailed=_detailed(config), named=_named(config), tests_per=_tests_per(config),
        )

    def scope_option(self) -> str | None:
        """The scope option that a rerun must repeat as given (a project case names its own project)."""
        if self.job_id is not None:
            return f"--job {self.job_id}"
        if self.occurrence_ids:
            return "--occurrence " + ",".join(map(str, self.occurrence_ids))
        return None


def _share(config: pytest.Config) -> float:
    value = str(config.getini("invariants_repair_max_share")).strip()
    try:
        share = float(value.removesuffix("%")) / 100
    except ValueError:
        share = -1.0
    if not value.endswith("%") or not 0 < share <= 1:
        raise ConfigError(f"invariants_repair_max_share: {value!r} is not a share like 10%")
    return share


def _detailed(config: pytest.Config) -> bool:
    option = config.option
    return option.verbose > 0 or "A" in (option.reportchars or "") or option.tbstyle != "auto"


def _tests_per(config: pytest.Config) -> str:
    """``--tests-per``; ``auto`` becomes ``case`` when the run picks cases by name (``-k``, ``--deselect``, a node
    id with a ``[case]``): those select rule x project cases, which a test per rule would not have."""
    chosen: str = config.getoption("tests_per")
    option = config.option
    by_name = option.keyword or getattr(option, "deselect", None) or any("[" in str(a) for a in config.args)
    return "case" if chosen == "auto" and by_name else chosen


def _named(config: pytest.Config) -> frozenset[str]:
    """The words of ``-m`` and ``-k``."""
    return frozenset(re.findall(r"\w+", f"{config.option.markexpr or ''} {config.option.keyword or ''}"))


def _strict(config: pytest.Config) -> bool:
    """pytest's own --strict: the ``strict`` ini on pytest 9, a plain option (alias of --strict-markers) on 8."""
    try:
        return bool(config.getini("strict"))
    except ValueError:
        return bool(config.getoption("strict", False))
