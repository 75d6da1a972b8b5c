"""Attribution (README, "Blame"): the story of a night.  An ML job is killed inside save_results and leaves
partial saves (D1) on its station's captures, made by its pipeline's algorithms, inside its window; another
job of the same project ran at the same time on another station with another pipeline; some partial saves
were written the next morning, when no job ran.  The attribution names the killed job with high confidence,
leaves the other job alone, and calls the morning's rows unattributed."""

import time
from datetime import datetime, timedelta

import pytest
from django.db import connection

from antenna_invariants import blame
from antenna_invariants.rules import RULES
from fixtures import factories as f
from fixtures.scenarios import jobs as story
from fixtures.scenarios import occurrences as scenarios

NIGHT = datetime(2026, 4, 16, 2, 0)


def origins(invariants, rule_id, project):
    outcome = invariants.check(rule_id, project=project)
    attribution = blame.attribute(RULES[rule_id], outcome.sample, outcome.violations)
    return attribution, {o.job: o for o in attribution.origins}


@pytest.fixture
def night(db):
    """The killed job's station and project, its job, an unrelated job at the same time, and three groups of
    partial saves: by the killed job's pipeline inside its window, the same outside every window, and inside
    the window but by another pipeline on the same captures' station."""
    station = f.DeploymentFactory()
    killed = story.pipeline_run(station, NIGHT, minutes=40, status="FAILURE")
    neighbour = f.DeploymentFactory(project=station.project)
    unrelated = story.pipeline_run(neighbour, NIGHT - timedelta(minutes=30), minutes=120)
    inside = story.by_pipeline(killed, *(scenarios.partial_save(station) for _ in range(3)))
    story.written_at(NIGHT + timedelta(minutes=12), *inside)
    morning = [scenarios.partial_save(station) for _ in range(2)]
    story.written_at(NIGHT + timedelta(hours=8), *morning)
    return station, killed, unrelated, inside, morning


def test_rows_go_to_the_job_whose_window_footprint_and_algorithms_agree(invariants, night):
    station, killed, unrelated, inside, morning = night

    attribution, by_job = origins(invariants, "D1", station.project_id)

    assert set(by_job) == {killed.pk, None}
    assert by_job[killed.pk].rows == 3
    assert by_job[killed.pk].sample == sorted(o.pk for o in inside)
    assert by_job[killed.pk].confidence == "high"
    assert "time window, input captures (deployment" in by_job[killed.pk].reason
    killed_origin = by_job[killed.pk]
    assert (killed_origin.type, killed_origin.status, killed_origin.window_end) == ("ml", "FAILURE", "finished_at")
    assert by_job[killed.pk].window == ["2026-04-16 02:00", "2026-04-16 02:40"]
    assert by_job[None].rows == 2
    assert by_job[None].confidence == "none"
    assert by_job[None].sample == sorted(o.pk for o in morning)
    assert attribution.attributed == 5


def test_the_unrelated_job_is_named_when_only_its_window_fits(invariants, night):
    """A row inside only the unrelated job's window, on a third station, by none of its algorithms: low."""
    station, killed, unrelated, inside, morning = night
    third = f.DeploymentFactory(project=station.project)
    stray = scenarios.partial_save(third)
    story.written_at(NIGHT + timedelta(minutes=80), stray)

    _, by_job = origins(invariants, "D1", station.project_id)

    assert by_job[unrelated.pk].sample == [stray.pk]
    assert by_job[unrelated.pk].confidence == "low"
    assert by_job[unrelated.pk].reason.startswith("only the time window agrees")
    assert by_job[killed.pk].rows == 3


def test_a_log_line_naming_the_capture_raises_a_time_only_match(invariants, night):
    """The unrelated job's log names the stray row's capture: window and log agree (medium)."""
    station, killed, unrelated, inside, morning = night
    stray = scenarios.partial_save(f.DeploymentFactory(project=station.project))
    story.written_at(NIGHT + timedelta(minutes=80), stray)
    story.logged(unrelated, stray)

    _, by_job = origins(invariants, "D1", station.project_id)

    assert by_job[unrelated.pk].confidence == "medium"
    assert "its log naming the captures agree" in by_job[unrelated.pk].reason


def test_a_job_that_never_finished_ends_its_window_at_its_last_update(invariants):
    station = f.DeploymentFactory()
    stuck = story.pipeline_run(station, NIGHT, minutes=25, status="STARTED", finished=False)
    rows = story.by_pipeline(stuck, scenarios.partial_save(station))
    story.written_at(NIGHT + timedelta(minutes=20), *rows)
    late = story.by_pipeline(stuck, scenarios.partial_save(station))
    story.written_at(NIGHT + timedelta(minutes=50), *late)

    _, by_job = origins(invariants, "D1", station.project_id)

    assert by_job[stuck.pk].window_end == "updated_at"
    assert by_job[stuck.pk].window[1] == "2026-04-16 02:25"
    assert by_job[stuck.pk].sample == [rows[0].pk]
    assert by_job[None].sample == [late[0].pk]


def test_equally_fitting_jobs_lower_the_confidence_and_say_so(invariants):
    station = f.DeploymentFactory()
    algorithms = [f.AlgorithmFactory(detector=True), f.AlgorithmFactory()]
    first = story.pipeline_run(station, NIGHT, algorithms=algorithms)
    story.pipeline_run(station, NIGHT, algorithms=algorithms)  # a retry of the same job, same window
    rows = story.by_pipeline(first, scenarios.partial_save(station))
    story.written_at(NIGHT + timedelta(minutes=5), *rows)

    attribution, _ = origins(invariants, "D1", station.project_id)

    (origin,) = attribution.origins
    assert origin.confidence == "medium"
    assert "other jobs fit as well" in origin.reason


def test_rows_of_another_project_are_never_given_to_this_projects_job(invariants, night):
    station, killed, *_ = night
    elsewhere = f.DeploymentFactory()
    theirs = story.by_pipeline(killed, scenarios.partial_save(elsewhere))  # same algorithms, same time
    story.written_at(NIGHT + timedelta(minutes=12), *theirs)

    _, by_job = origins(invariants, "D1", elsewhere.project_id)

    assert set(by_job) == {None}


def test_collection_and_single_capture_footprints(invariants):
    """A job over a collection (or one capture) agrees only with the rows on those captures."""
    station = f.DeploymentFactory()
    inside, outside = scenarios.partial_save(station), scenarios.partial_save(station)
    capture = inside.detections.get().source_image
    collection = f.CollectionFactory(project=station.project, images=[capture])
    over_collection = story.pipeline_run(station, NIGHT, deployment=None, source_image_collection=collection)
    story.by_pipeline(over_collection, inside, outside)
    story.written_at(NIGHT + timedelta(minutes=5), inside, outside)

    attribution, _ = origins(invariants, "D1", station.project_id)

    # both in its window and by its pipeline, only one on its captures: one job, two confidences
    assert sorted((o.job, o.rows, o.confidence) for o in attribution.origins) == [
        (over_collection.pk, 1, "high"), (over_collection.pk, 1, "medium")]
    attribution = blame.attribute(RULES["D1"], [inside.pk])
    assert attribution.origins[0].confidence == "high"
    assert f"collection {collection.pk}" in attribution.origins[0].reason
    attribution = blame.attribute(RULES["D1"], [outside.pk])
    assert attribution.origins[0].confidence == "medium"
    assert "not the input captures" in attribution.origins[0].reason

    single = story.pipeline_run(station, NIGHT + timedelta(days=1), deployment=None, source_image_single=capture)
    story.by_pipeline(single, inside)
    story.written_at(NIGHT + timedelta(days=1, minutes=5), inside)
    assert blame.attribute(RULES["D1"], [inside.pk]).origins[0].confidence == "high"


@pytest.mark.parametrize(("rule_id", "table"), [("N6", "detections"), ("G6", "classifications")])
def test_detections_and_classifications_are_traced_through_their_own_paths(invariants, rule_id, table):
    station = f.DeploymentFactory()
    run_ = story.pipeline_run(station, NIGHT)
    occurrence = story.by_pipeline(run_, f.OccurrenceFactory(event__deployment=station))[0]
    story.written_at(NIGHT + timedelta(minutes=3), occurrence)
    detection = occurrence.detections.get()
    row = detection if table == "detections" else detection.classifications.get()

    attribution = blame.attribute(RULES[rule_id], [row.pk])

    assert [(o.job, o.confidence) for o in attribution.origins] == [(run_.pk, "high")]


def test_rules_without_a_trace_are_not_attributable(invariants):
    attribution = blame.attribute(RULES["D7"], [1, 2])
    assert not attribution.attributable
    assert attribution.reason.startswith("not attributable: identifications")
    assert blame.attribute(RULES["J1"], [1]).reason == "not attributable: the row is a job: its id is the origin"
    lines = blame.summary_lines(blame.attribute(RULES["K4"], [1]).as_dict(), "main_taxon")
    assert blame.trace_of(RULES["C11"]) == "collection membership rows carry no timestamp"
    assert lines == ["not attributable: taxa are imported by commands, not written by a job"]


def test_when_it_appeared_and_the_deploy_before_it(invariants, night):
    station, killed, unrelated, inside, morning = night
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO django_migrations (app, name, applied) VALUES ('main', '0093_x', %s), "
                       "('main', '0094_y', %s), ('main', '0095_later', %s)",
                       [NIGHT - timedelta(minutes=4), NIGHT - timedelta(minutes=2), NIGHT + timedelta(days=30)])

    attribution, _ = origins(invariants, "D1", station.project_id)

    assert attribution.oldest == {"id": min(o.pk for o in inside), "created_at": "2026-04-16 02:12"}
    assert attribution.newest == {"id": max(o.pk for o in morning), "updated_at": "2026-04-16 10:00"}
    assert attribution.deploy == {"migration": "main/0094_y", "applied": "2026-04-16 01:58", "with": 1,
                                  "minutes_before": 14}
    line = blame.appeared_line(attribution.as_dict(), "main_occurrence")
    assert "first violating row 14 minutes after migration main/0094_y (with 1 more) was applied" in line


def test_terminal_lines_are_one_per_origin_and_capped(invariants, night):
    station, killed, *_ = night
    attribution, _ = origins(invariants, "D1", station.project_id)

    lines = blame.summary_lines(attribution.as_dict(), "main_occurrence", limit=1)

    assert lines[0].startswith(f"3 most likely from job {killed.pk} (ml, FAILURE, pipeline \"")
    assert "2026-04-16 02:00–02:40): high confidence" in lines[0]
    assert lines[1] == "… 1 more origins in reports/invariants.json"
    assert lines[2].startswith("appeared: oldest violating main_occurrence")


def test_attribution_writes_nothing(invariants, night):
    station = night[0]
    before = invariants.snapshot()
    origins(invariants, "D1", station.project_id)
    assert invariants.snapshot() == before


def test_a_job_whose_window_spans_weeks_is_no_candidate(invariants):
    """A job that recorded finishing before it started (J5) ends its window at its last update, months later."""
    station = f.DeploymentFactory()
    contradictory = story.pipeline_run(station, NIGHT, minutes=60 * 24 * 30)
    type(contradictory).objects.filter(pk=contradictory.pk).update(finished_at=NIGHT - timedelta(days=1))
    rows = story.by_pipeline(contradictory, scenarios.partial_save(station))
    story.written_at(NIGHT + timedelta(minutes=5), *rows)

    _, by_job = origins(invariants, "D1", station.project_id)

    assert set(by_job) == {None}


def test_beyond_the_cap_the_report_says_how_many_were_attributed(invariants, night, monkeypatch):
    station = night[0]
    monkeypatch.setattr(blame, "ID_CAP", 2)
    outcome = invariants.check("D1", project=station.project_id)

    attribution = blame.attribute(RULES["D1"], outcome.sample, outcome.violations)

    assert attribution.attributed == 2
    assert sum(o.rows for o in attribution.origins) == 2
    assert attribution.reason == "the first 2 of 5 violating rows attributed"


def test_several_cases_of_a_rule_are_attributed_in_one_statement(invariants, night, django_assert_max_num_queries):
    station, killed, *_ = night
    elsewhere = f.DeploymentFactory()
    theirs = story.pipeline_run(elsewhere, NIGHT)
    rows = story.by_pipeline(theirs, scenarios.partial_save(elsewhere))
    story.written_at(NIGHT + timedelta(minutes=12), *rows)
    projects = (station.project_id, elsewhere.project_id)
    cases = {f"project{p}": (invariants.check("D1", project=p).sample, None) for p in projects}

    with django_assert_max_num_queries(3):  # the attribution, the migrations (and their table's existence)
        attributions = blame.attribute_cases(RULES["D1"], cases)

    mine, other = attributions[f"project{station.project_id}"], attributions[f"project{elsewhere.project_id}"]
    assert {o.job for o in mine.origins} == {killed.pk, None}
    assert [(o.job, o.rows, o.confidence) for o in other.origins] == [(theirs.pk, 1, "high")]
    assert other.oldest["id"] == rows[0].pk


def test_first_seen_comes_from_the_baseline_then_the_compared_run_then_this_run():
    from antenna_invariants.baseline import first_seen

    case = {"violations": 3, "ids": [1, 2, 3], "first_seen": {"1": "2026-11-01T06:00:00+00:00"}}
    previous = {"sample": [4], "first_seen": {"5": "2026-11-20T06:00:00+00:00"},
                "run_started": "2026-11-25T06:00:00+00:00"}

    seen = first_seen([1, 2, 4, 5, 6], "2026-12-03T06:00:00+00:00", case, "2026-11-10T06:00:00+00:00", previous)

    assert seen == {"1": "2026-11-01T06:00:00+00:00",  # the baseline's own record
                    "2": "2026-11-10T06:00:00+00:00",  # an older baseline: when it was written
                    "4": "2026-11-25T06:00:00+00:00",  # listed by the compared run
                    "5": "2026-11-20T06:00:00+00:00",  # carried by the compared run
                    "6": "2026-12-03T06:00:00+00:00"}  # new in this run


def test_a_baseline_written_again_keeps_the_first_run_that_saw_each_id(tmp_path):
    import json

    from antenna_invariants import baseline

    record = {"rule": "D1", "project": "project1", "status": "failed", "violations": 2, "fingerprint": [7, 8],
              "first_seen": {"7": "2026-11-01T06:00:00+00:00"}}
    run = {"started": "2026-12-03T06:00:00+00:00", "database": {"label": "db"}, "scope": "all"}
    baseline.write(tmp_path / "baseline.json", [record], run)

    written = json.loads((tmp_path / "baseline.json").read_text())
    assert written["cases"]["D1/project1"]["first_seen"] == {
        "7": "2026-11-01T06:00:00+00:00", "8": "2026-12-03T06:00:00+00:00"}
    assert written["run_started"] == "2026-12-03T06:00:00+00:00"
    assert baseline.Baseline(tmp_path / "baseline.json").written == "2026-12-03T06:00:00+00:00"


@pytest.mark.django_db(transaction=True, available_apps=["antenna_invariants.mirror"])
def test_a_run_names_the_origins_in_the_terminal_json_html_and_summary(run):
    import json

    import jsonschema
    from test_reports import documented_schema

    station = f.DeploymentFactory()
    killed = story.pipeline_run(station, NIGHT, status="FAILURE", pipeline_name="Quebec moths 2025")
    inside = story.by_pipeline(killed, scenarios.partial_save(station), scenarios.partial_save(station))
    story.written_at(NIGHT + timedelta(minutes=12), *inside)
    morning = scenarios.partial_save(station)
    story.written_at(NIGHT + timedelta(hours=8), morning)

    code, output = run("-m", "D1", f"--project={station.project_id}",
                       "--antenna-url", "https://someone:pa55word@antenna.example.org")

    assert code == 1, output
    assert (f'2 most likely from job {killed.pk} (ml, FAILURE, pipeline "Quebec moths 2025", '
            f"2026-04-16 02:00–02:40): high confidence") in output
    assert "1 unattributed (no job's window holds them; written 2026-04-16 10:00–10:00)" in output
    assert f"appeared: oldest violating occurrences {min(o.pk for o in inside)} created 2026-04-16 02:12" in output
    record = run.results()[("D1", f"project{station.project_id}")]
    assert [(o["job"], o["rows"], o["confidence"]) for o in record["origins"]] == [(killed.pk, 2, "high"),
                                                                                   (None, 1, "none")]
    assert record["origins"][1]["sample"] == [morning.pk]
    assert record["attribution"]["newest"] == {"id": morning.pk, "updated_at": "2026-04-16 10:00"}
    jsonschema.validate(json.loads((run.reports / "invariants.json").read_text()), documented_schema())
    html = (run.reports / "report.html").read_text()
    assert "inv-origins" in html  # the per-job breakdown, in pytest-html's embedded data
    assert f"href=https://antenna.example.org/projects/{station.project_id}/jobs/{killed.pk}" in html
    assert "pa55word" not in html + output
    summary = (run.reports / "summary.md").read_text()
    assert f"| job {killed.pk}: 2 (high); 1 unattributed |" in summary


@pytest.mark.django_db(transaction=True, available_apps=["antenna_invariants.mirror"])
def test_with_a_baseline_each_id_says_which_run_first_saw_it(run):
    import json

    station = f.DeploymentFactory()
    known = scenarios.partial_save(station)
    scope = ("-m", "D1", f"--project={station.project_id}")
    code, output = run(*scope, "--write-baseline")
    assert code == 1, output
    baseline_file = run.reports / "kept-baseline.json"
    (run.reports / "baseline.json").rename(baseline_file)
    then = json.loads(baseline_file.read_text())["run_started"]
    new = scenarios.partial_save(station)
    time.sleep(1.1)  # a run's start is kept to the second: the two runs must not share one

    code, output = run(*scope, "--baseline", str(baseline_file))

    document = json.loads((run.reports / "invariants.json").read_text())
    record = run.results()[("D1", f"project{station.project_id}")]
    assert record["first_seen"] == {str(known.pk): then, str(new.pk): document["run"]["started"]}
    then, now = then[:16].replace("T", " "), document["run"]["started"][:16].replace("T", " ")
    assert f"first seen (of the ids shown): 1 in the run of {then}, 1 in the run of {now}" in output


def cte_rows(rule_id, ids):
    """{CTE name: rows it produced} of the attribution statement on ``ids``, from EXPLAIN ANALYZE (the
    statement is read-only: running it under EXPLAIN changes nothing)."""
    import json

    sql, params = blame._statement(RULES[rule_id].model, blame.trace_of(RULES[rule_id]), ids)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    found, stack = {}, [plan[0]["Plan"]]
    while stack:
        node = stack.pop()
        if node.get("Subplan Name", "").startswith("CTE "):
            found[node["Subplan Name"][4:]] = node["Actual Rows"] * node["Actual Loops"]
        stack += node.get("Plans", [])
    return found


def test_rows_no_job_window_reaches_skip_the_lookup_of_their_captures_and_algorithms(invariants, night):
    """The shortcut: a row whose project has no job whose window reaches its time has no candidate, and its
    captures and algorithms (the per-row lookups that cost most) are never read; it is still reported."""
    station, killed, unrelated, inside, morning = night
    ids = [o.pk for o in morning]

    read = cte_rows("D1", ids)

    assert read["reached"] == 0
    assert read["v_caps"] == 0
    assert read["v_algs"] == 0
    attribution = blame.attribute(RULES["D1"], ids)
    (origin,) = attribution.origins
    assert (origin.job, origin.rows, origin.sample) == (None, 2, sorted(ids))
    assert attribution.oldest["created_at"] == "2026-04-16 10:00"


def test_rows_a_job_window_reaches_are_still_looked_up_and_attributed(invariants, night):
    station, killed, unrelated, inside, morning = night
    ids = [o.pk for o in [*inside, *morning]]

    read = cte_rows("D1", ids)

    assert read["reached"] == 3  # the 3 inside rows: the killed job's window and the unrelated one's hold them
    assert read["pairs"] == 3  # only the killed job agrees with them on anything besides time
    assert read["v_caps"] == 3  # only those 3 rows' captures are read, not the morning rows'
    assert read["v_algs"] > 0
    by_job = {o.job: o for o in blame.attribute(RULES["D1"], ids).origins}
    assert (by_job[killed.pk].rows, by_job[killed.pk].confidence) == (3, "high")
    assert by_job[None].sample == sorted(o.pk for o in morning)


def test_a_footprint_of_many_captures_agrees_through_any_of_them(invariants):
    """An event (traced through all its captures) agrees with a job over its deployment, over a collection
    holding one of its captures, or over one of its captures; not with a job over another deployment."""
    station = f.DeploymentFactory()
    occurrences = [f.OccurrenceFactory(event__deployment=station) for _ in range(3)]
    event = occurrences[0].event
    captures = [o.detections.get().source_image for o in occurrences]
    type(captures[0]).objects.filter(pk__in=[c.pk for c in captures]).update(event=event)
    collection = f.CollectionFactory(project=station.project, images=[captures[2]])
    jobs = {
        "deployment": story.job(station, started_at=NIGHT, finished_at=NIGHT + timedelta(hours=1)),
        "collection": story.job(station, deployment=None, source_image_collection=collection,
                                started_at=NIGHT + timedelta(days=1), finished_at=NIGHT + timedelta(days=1, hours=1)),
        "single": story.job(station, deployment=None, source_image_single=captures[1],
                            started_at=NIGHT + timedelta(days=2), finished_at=NIGHT + timedelta(days=2, hours=1)),
        "elsewhere": story.job(f.DeploymentFactory(project=station.project), started_at=NIGHT + timedelta(days=3),
                               finished_at=NIGHT + timedelta(days=3, hours=1)),
    }
    for day, kind in enumerate(jobs):
        story.written_at(NIGHT + timedelta(days=day, minutes=5), event)
        (origin,) = blame.attribute(RULES["K2"], [event.pk]).origins
        assert origin.job == jobs[kind].pk, kind
        agrees = "input captures" in origin.reason.split(" agree")[0]
        assert agrees == (kind != "elsewhere"), (kind, origin.reason)


def test_warn_rules_keep_only_their_sample_unless_strict():
    from antenna_invariants.layout import load_rules
    from antenna_invariants.runchecks import Checks

    load_rules()
    assert RULES["F2"].severity == "warn"
    assert Checks(sample_size=20)._keep(RULES["F2"]) == 20
    assert Checks(sample_size=20, strict=True)._keep(RULES["F2"]) == blame.ID_CAP
    assert Checks(sample_size=20)._keep(RULES["D1"]) == blame.ID_CAP
    assert Checks(sample_size=20)._keep(RULES["D7"]) == 20  # not attributable: nothing to keep for


@pytest.mark.django_db(transaction=True, available_apps=["antenna_invariants.mirror"])
def test_a_warned_case_says_it_was_not_attributed_and_strict_attributes_it(run):
    station = f.DeploymentFactory()
    killed = story.pipeline_run(station, NIGHT, status="FAILURE")
    merged = story.by_pipeline(killed, scenarios.two_real_detections(station))  # F2, a warn rule
    story.written_at(NIGHT + timedelta(minutes=12), *merged)
    scope = ("-m", "F2", f"--project={station.project_id}")

    code, output = run(*scope)

    assert code == 0, output
    record = run.results()[("F2", f"project{station.project_id}")]
    assert record["status"] == "warned"
    assert record["origins"] == []
    assert record["attribution"]["attributable"] is True
    assert record["attribution"]["reason"] == blame.NOT_ATTRIBUTED["warned"]
    assert record["attribution"]["attributed"] == 0
    html = (run.reports / "report.html").read_text()
    assert "origin: not attributed (warn): a warned case does not fail the run" in html

    code, output = run(*scope, "--strict")

    assert code == 1, output
    record = run.results()[("F2", f"project{station.project_id}")]
    assert [(o["job"], o["confidence"]) for o in record["origins"]] == [(killed.pk, "high")]
    assert f"1 most likely from job {killed.pk}" in output


def test_a_baselined_case_says_it_was_not_attributed(invariants):
    from antenna_invariants.rules import Status

    attribution = blame.not_attributed(RULES["D1"], Status.BASELINED)
    assert attribution.attributable
    assert not attribution.origins
    assert blame.summary_lines(attribution.as_dict(), "main_occurrence") == [blame.NOT_ATTRIBUTED["baselined"]]
    assert blame.not_attributed(RULES["D7"], Status.WARNED).reason.startswith("not attributable: identifications")
    record = {"attribution": attribution.as_dict(), "origins": []}
    assert blame.origin_summary([record]) == "not attributed (baselined)"
    assert blame.fails_the_run(Status.FAILED)
    assert not blame.fails_the_run(Status.BASELINED)
    assert blame.fails_the_run(Status.WARNED, strict=True)
    assert not blame.fails_the_run(Status.WARNED)
