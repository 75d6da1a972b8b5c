"""Build an Antenna-shaped database at a chosen scale, set-based, with a known set of violations per rule.

    generate(cursor, occurrences=1_000_000, violations=1000)

The healthy base (``BASE``), for ``n`` occurrences (even) over ``projects`` projects with two deployments each:
- n/2 busy captures, each holding the first real detection of two occurrences (occurrence g on capture
  (g+1)/2); every even occurrence has a second real detection on the next capture of its deployment, unless
  that one falls in another event; n/2 empty captures, each with one null marker: about 2n detections;
- four classifications per occurrence: on each real detection a non-terminal binary "moth" and a terminal
  species classification (algorithm 3), plus an older species model (algorithm 4) on the first detection,
  weaker: about 4n;
- the determination is the expected one (an identification's taxon with 1.0 for every 20th occurrence);
- one event per deployment and night (500 busy captures a night), 1,156 taxa in a four-rank tree (each species
  named after its genus), one collection and five ml jobs per project, Antenna's two watchdog tasks.

Then ``PLANTS`` write the defects, each on rows of its own (a "slot" of occurrences g = 1 + 4i + stride*j,
all odd, so no slot touches another's rows, spread over the whole base and so over every project),
recording every violating id in ``bench_planted(rule, id)``.
The cached fields (K1-K4) are computed last, by the suite's own recounts, and then made stale on purpose.
A defect that is, by nature, also another rule's violation is recorded for both (a phantom occurrence's
null marker is N1's, an event without a deployment is also empty, an out-of-range score is also stale).
"""

from __future__ import annotations

CAPTURES_PER_NIGHT = 500

BASE = """
CREATE TABLE bench_planted (rule text NOT NULL, id bigint NOT NULL);
INSERT INTO users_user (id, password, is_superuser, email, is_staff, is_active, date_joined, name)
SELECT u, '!', false, 'user' || u || '@example.org', false, true, now(), 'user ' || u FROM generate_series(1, 5) u;

INSERT INTO main_taxon (id, created_at, updated_at, name, display_name, rank, parent_id, parents_json, active, author,
    notes)
SELECT id, now(), now(), name, name, rank, parent, '[]', true, '', '' FROM (
    SELECT 1 AS id, 'Lepidoptera' AS name, 'ORDER' AS rank, NULL::int AS parent
    UNION ALL SELECT f, 'Family ' || f, 'FAMILY', 1 FROM generate_series(2, 6) f
    UNION ALL SELECT g, 'Genus' || g, 'GENUS', 2 + g %% 5 FROM generate_series(7, 56) g
    UNION ALL SELECT s, 'Genus' || (7 + s %% 50) || ' species' || s, 'SPECIES', 7 + s %% 50
              FROM generate_series(101, 1100) s
    UNION ALL SELECT 1101, 'moth', 'UNKNOWN', 1
    UNION ALL SELECT 1102, 'nonmoth', 'UNKNOWN', 1
    UNION ALL SELECT 1100 + i, 'Label ' || i, 'UNKNOWN', 1 FROM generate_series(3, 5) i
) t;
-- Antenna's watchdogs (jobs/0020, ml/0018), on a daily schedule here so that a long benchmark never sees them late
INSERT INTO django_celery_beat_crontabschedule (id, minute, hour, day_of_week, day_of_month, month_of_year, timezone)
VALUES (1, '0', '3', '*', '*', '*', 'UTC');
INSERT INTO django_celery_beat_periodictask (id, name, task, args, kwargs, enabled, last_run_at, total_run_count,
    date_changed, description, crontab_id, one_off, headers)
VALUES (1, 'jobs.health_check', 'ami.jobs.tasks.jobs_health_check', '[]', '{}',
        true, now(), 1, now(), '', 1, false, '{}'),
       (2, 'celery.check_processing_services_online', 'ami.ml.tasks.check_processing_services_online', '[]', '{}',
        true, now(), 1, now(), '', 1, false, '{}');

INSERT INTO ml_algorithmcategorymap (id, created_at, updated_at, data, labels)
VALUES (1, now(), now(), '[]', ARRAY['Label 3', 'Label 4', 'Label 5']);
INSERT INTO ml_algorithm (id, created_at, updated_at, name, key, description, version, task_type, category_map_id)
VALUES (1, now(), now(), 'detector', 'detector', '', 1, 'localization', NULL),
       (2, now(), now(), 'binary', 'binary', '', 1, 'classification', NULL),
       (3, now(), now(), 'species', 'species', '', 2, 'classification', NULL),
       (4, now(), now(), 'species old', 'species-old', '', 1, 'classification', NULL),
       (5, now(), now(), 'masking', 'masking', '', 1, 'classification', NULL),
       (6, now(), now(), 'classifier saved as detector', 'mistyped', '', 1, 'classification', NULL),
       (7, now(), now(), 'mapped', 'mapped', '', 1, 'classification', 1);
INSERT INTO ml_pipeline (id, created_at, updated_at, name, slug, description, version, version_name, stages,
    default_config)
VALUES (1, now(), now(), 'moths', 'moths', '', 1, '', '[]', '{}');
INSERT INTO ml_pipeline_algorithms (pipeline_id, algorithm_id) VALUES (1, 1), (1, 2), (1, 3);

INSERT INTO main_project (id, created_at, updated_at, name, description, draft, feature_flags, active, priority,
    session_time_gap_seconds, default_filters_score_threshold)
SELECT p, now(), now(), 'project ' || p, '', false, '{}', true, 1, 7200, CASE WHEN p %% 2 = 0 THEN 0.6 ELSE 0.5 END
FROM generate_series(1, %(projects)s) p;
INSERT INTO main_deployment (id, created_at, updated_at, name, description, project_id)
SELECT d, now(), now(), 'station ' || d, '', (d - 1) %% %(projects)s + 1 FROM generate_series(1, %(deployments)s) d;

INSERT INTO main_event (id, created_at, updated_at, group_by, start, "end", deployment_id, project_id)
SELECT (d - 1) * %(nights)s + night + 1, now(), now(),
       to_char(night_start AT TIME ZONE 'America/New_York', 'YYYY-MM-DD'), night_start,
       night_start + interval '30 seconds' * %(per_night)s, d, (d - 1) %% %(projects)s + 1
FROM generate_series(1, %(deployments)s) d, generate_series(0, %(nights)s - 1) night,
     LATERAL (SELECT timestamptz '2024-06-01 01:00+00' + night * interval '1 day' AS night_start) s;

-- busy captures 1..h and empty captures h+1..2h; capture c and h+c share deployment, night and minute
INSERT INTO main_sourceimage (id, created_at, updated_at, path, "timestamp", width, height, size, test_image,
    project_id, deployment_id, event_id)
SELECT c, now(), now(), 'captures/' || c || '.jpg',
       timestamptz '2024-06-01 01:00+00' + (rank / %(per_night)s) * interval '1 day'
           + (rank %% %(per_night)s) * interval '30 seconds' + (c > %(h)s)::int * interval '15 seconds',
       4096, 3072, 1000000, false, (d - 1) %% %(projects)s + 1, d, (d - 1) * %(nights)s + rank / %(per_night)s + 1
FROM generate_series(1, 2 * %(h)s) c,
     LATERAL (SELECT (c - 1) %% %(h)s AS base) b,
     LATERAL (SELECT %(deployment_of_base)s AS d, %(rank_of_base)s AS rank) r;

INSERT INTO main_occurrence (id, created_at, updated_at, determination_id, determination_score, event_id,
    deployment_id, project_id)
SELECT g, now(), now(), 101 + g %% 1000, CASE WHEN g %% 20 = 0 THEN 1.0 ELSE 0.55 + (g %% 40) / 100.0 END,
       s.event_id, s.deployment_id, s.project_id
FROM generate_series(1, %(n)s) g JOIN main_sourceimage s ON s.id = (g + 1) / 2;

INSERT INTO main_detection (id, created_at, updated_at, source_image_id, bbox, "timestamp", path, occurrence_id,
    detection_algorithm_id, detection_score)
SELECT g, now() - interval '30 days', now(), s.id,
       CASE WHEN g %% 2 = 1 THEN '[10, 10, 50, 50]' ELSE '[60, 60, 100, 100]' END::jsonb,
       s."timestamp", 'crops/' || g || '.jpg', g, 1, 0.9
FROM generate_series(1, %(n)s) g JOIN main_sourceimage s ON s.id = (g + 1) / 2;

INSERT INTO main_detection (id, created_at, updated_at, source_image_id, bbox, "timestamp", path, occurrence_id,
    detection_algorithm_id, detection_score)
SELECT %(n)s + g / 2, now() - interval '30 days', now(), s.id, '[110, 110, 150, 150]', s."timestamp",
       'crops/' || g || '-2.jpg', g, 1, 0.8
FROM generate_series(2, %(n)s, 2) g
JOIN main_sourceimage here ON here.id = g / 2
JOIN main_sourceimage s ON s.id = g / 2 + %(next_capture)s AND s.event_id = here.event_id AND s.id <= %(h)s;

INSERT INTO bench_planted SELECT 'F2', occurrence_id FROM main_detection WHERE id > %(n)s;

INSERT INTO main_detection (id, created_at, updated_at, source_image_id, bbox, "timestamp", path, occurrence_id,
    detection_algorithm_id)
SELECT 2 * %(n)s + c, now() - interval '30 days', now(), %(h)s + c, NULL, s."timestamp", NULL, NULL, 1
FROM generate_series(1, %(h)s) c JOIN main_sourceimage s ON s.id = %(h)s + c;

INSERT INTO main_classification (created_at, updated_at, detection_id, taxon_id, score, "timestamp", terminal,
    algorithm_id)
SELECT now(), now(), d.id, 1101, 0.95, now(), false, 2 FROM main_detection d WHERE d.bbox IS NOT NULL;
INSERT INTO main_classification (created_at, updated_at, detection_id, taxon_id, score, "timestamp", terminal,
    algorithm_id)
SELECT now(), now(), d.id, 101 + d.occurrence_id %% 1000,
       0.55 + (d.occurrence_id %% 40) / 100.0 - CASE WHEN d.id > %(n)s THEN 0.1 ELSE 0 END, now(), true, 3
FROM main_detection d WHERE d.bbox IS NOT NULL;
INSERT INTO main_classification (created_at, updated_at, detection_id, taxon_id, score, "timestamp", terminal,
    algorithm_id)
SELECT now(), now(), d.id, 101 + (d.occurrence_id + 1) %% 1000, 0.35 + (d.occurrence_id %% 40) / 100.0, now(), true, 4
FROM main_detection d WHERE d.id <= %(n)s;

INSERT INTO main_identification (created_at, updated_at, occurrence_id, taxon_id, user_id, withdrawn, comment)
SELECT now() - interval '10 days', now(), g, 101 + g %% 1000, 1 + g %% 5, false, ''
FROM generate_series(20, %(n)s, 20) g;

INSERT INTO main_sourceimagecollection (id, created_at, updated_at, name, description, project_id, method)
SELECT p, now(), now(), 'sample ' || p, '', p, 'random' FROM generate_series(1, %(projects)s) p;
INSERT INTO main_sourceimagecollection_images (sourceimagecollection_id, sourceimage_id)
SELECT project_id, id FROM main_sourceimage WHERE id %% 100 = 0 AND id <= %(h)s;
INSERT INTO jobs_job (created_at, updated_at, name, queue, status, progress, logs, delay, shuffle, job_type_key,
    dispatch_mode, project_id, deployment_id, source_image_collection_id, pipeline_id, started_at, finished_at)
SELECT now() - interval '2 days', now() - interval '2 days', 'process ' || p, 'default', 'SUCCESS', '{}', '{}', 0,
       true, 'ml', 'internal', p, p, p, 1, now() - interval '3 days', now() - interval '2 days'
FROM generate_series(1, %(projects)s) p, generate_series(1, 5) k;
"""


def slot(i: int, stride: int, n: int, v: int) -> str:
    """The occurrences of slot ``i`` (odd, single detection, no identification): at most ``v`` of them."""
    count = max(0, min(v, (n - 1 - 4 * i) // stride + 1))
    return f"SELECT 1 + {4 * i} + {stride} * j AS g FROM generate_series(0, {count - 1}) j"


CTE = "-- recorded\n"


def record(rule: str, statement: str) -> str:
    """``statement`` (an UPDATE or INSERT ... RETURNING id) with its ids recorded as ``rule``'s violators."""
    return f"{CTE}x AS ({statement}) INSERT INTO bench_planted SELECT '{rule}', id FROM x"


# A new capture beside occurrence g's (same deployment, project, event) with no detection yet: ids from 10n + g.
NEW_CAPTURE = """INSERT INTO main_sourceimage (id, created_at, updated_at, path, "timestamp", width, height, size,
    test_image, project_id, deployment_id, event_id)
SELECT {offset} + g, now(), now(), 'captures/new-' || ({offset} + g) || '.jpg', {timestamp}, 4096, 3072, 1000,
       false, s.project_id, s.deployment_id, {event}
FROM slot JOIN main_sourceimage s ON s.id = (g + 1) / 2 RETURNING id"""

NEW_EVENT = """INSERT INTO main_event (id, created_at, updated_at, group_by, start, "end", deployment_id, project_id)
SELECT {offset} + g, now(), now(), to_char(st AT TIME ZONE 'America/New_York', 'YYYY-MM-DD'), st, {end},
       {deployment}, {project}
FROM slot JOIN main_sourceimage s ON s.id = (g + 1) / 2,
     LATERAL (SELECT timestamptz '2030-01-01 03:00+00' + g * interval '1 day' AS st) t RETURNING id"""

REAL_DETECTION = """INSERT INTO main_detection (id, created_at, updated_at, source_image_id, bbox, "timestamp", path,
    occurrence_id, detection_algorithm_id)
SELECT {offset} + g, now() - interval '30 days', now(), {capture}, {bbox}, s."timestamp", 'crops/x.jpg',
       {occurrence}, 1
FROM slot JOIN main_sourceimage s ON s.id = {capture} RETURNING id"""

CLASSIFY = """INSERT INTO main_classification (created_at, updated_at, detection_id, taxon_id, score, "timestamp",
    terminal, algorithm_id, category_map_id, scores, logits, applied_to_id)
SELECT now(), now(), {detection}, {taxon}, {score}, now(), {terminal}, {algorithm}, {map}, {scores}, {logits}, {applied}
FROM slot RETURNING id"""


def fill(template: str, **values: str) -> str:
    """Fill the named fields of ``template`` and leave every other ``{field}`` for the final format."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", str(value))
    return template


def classify(detection="g", taxon="101", score="0.1", terminal="false", algorithm="3", map="NULL", scores="NULL",
             logits="NULL", applied="NULL") -> str:
    return fill(CLASSIFY, **locals())


def first_classification(algorithm: int, detection: str = "g") -> str:
    return (f"(SELECT c.id FROM main_classification c WHERE c.detection_id = {detection}"
            f" AND c.algorithm_id = {algorithm})")


def with_slot(*statements: str) -> list[str]:
    """Each statement preceded by the slot (``{slot}``), as one more CTE when the statement is recorded."""
    return [f"WITH slot AS ({{slot}}), {s.removeprefix(CTE)}" if s.startswith(CTE) else f"WITH slot AS ({{slot}}) {s}"
            for s in statements]


MARKER = "2 * {n} + (g + 1) / 2"  # the null marker on occurrence g's empty twin capture
EMPTY_CAPTURE = "{h} + (g + 1) / 2"
OCC = "UPDATE main_occurrence o SET {set} FROM slot WHERE o.id = g RETURNING o.id"
DET = "UPDATE main_detection d SET {set} FROM slot WHERE d.id = g RETURNING d.id"
CAP = "UPDATE main_sourceimage s SET {set} FROM slot WHERE s.id = " + EMPTY_CAPTURE + " RETURNING s.id"
CLS = ("UPDATE main_classification c SET {set} FROM slot WHERE c.detection_id = g AND c.algorithm_id = {algorithm}"
       " RETURNING c.id")

# rule -> the statements that plant it (``{slot}`` is the rule's own slot; ``{offset}`` a free id range)
PLANTS: dict[str, list[str]] = {
    "D1": with_slot(record("D1", fill(OCC, set="determination_id = NULL, determination_score = NULL")),
                    *(f"INSERT INTO bench_planted SELECT '{also}', g FROM slot" for also in ("D2", "D3"))),
    "D2": with_slot(record("D2", fill(OCC, set="determination_id = 101 + (g + 7) % 1000"))),
    "D3": with_slot(record("D3", fill(OCC, set="determination_score = determination_score - 0.05"))),
    "D4": with_slot(record("D4", fill(OCC, set="determination_score = NULL")),
                    "INSERT INTO bench_planted SELECT 'D3', g FROM slot"),
    "D5": with_slot("DELETE FROM main_classification c USING slot WHERE c.detection_id = g",
                    record("D5", fill(OCC, set="updated_at = now()")),
                    *(f"INSERT INTO bench_planted SELECT '{also}', g FROM slot" for also in ("D2", "D3"))),
    "D6": with_slot(record("D6", fill(OCC, set="determination_score = 1.5")),
                    "INSERT INTO bench_planted SELECT 'D3', g FROM slot"),
    "S5": with_slot(record("S5", fill(OCC, set="deployment_id = NULL"))),
    "C3": with_slot(record("C3", fill(OCC, set="project_id = o.project_id % {projects} + 1"))),
    "C4": with_slot(fill(NEW_CAPTURE, offset="{offset}", timestamp="s.\"timestamp\" + interval '1 second'",
                                       event="(s.event_id - 1 + {nights}) % ({deployments} * {nights}) + 1")
                    .replace("s.project_id, s.deployment_id",
                             "s.deployment_id % {projects} + 1, s.deployment_id % {deployments} + 1"),
                    fill(REAL_DETECTION, offset="{offset}", capture="{offset} + g", bbox="'[1, 1, 9, 9]'",
                         occurrence="g"),
                    *(f"INSERT INTO bench_planted SELECT '{rule}', g FROM slot" for rule in ("C4", "F2"))),
    "C5": with_slot(fill(NEW_EVENT, offset="{offset}", end="st + interval '1 hour'", deployment="s.deployment_id",
                                     project="s.project_id"),
                    record("C5", fill(OCC, set="event_id = {offset} + g"))),
    "F1": with_slot(fill(NEW_CAPTURE, offset="{offset}", timestamp="s.\"timestamp\"", event="s.event_id"),
                    record("F1", """INSERT INTO main_occurrence (id, created_at, updated_at, event_id, deployment_id,
                        project_id) SELECT {offset} + g, now(), now(), s.event_id, s.deployment_id, s.project_id
                        FROM slot JOIN main_sourceimage s ON s.id = {offset} + g RETURNING id"""),
                    record("N1", """INSERT INTO main_detection (id, created_at, updated_at, source_image_id, bbox,
                        "timestamp", occurrence_id, detection_algorithm_id) SELECT {offset} + g, now(), now(), s.id,
                        NULL, s."timestamp", s.id, 1 FROM slot JOIN main_sourceimage s ON s.id = {offset} + g
                        RETURNING id""")),
    "D7": with_slot(*(f"""INSERT INTO main_identification (created_at, updated_at, occurrence_id, taxon_id, user_id,
                        withdrawn, comment) SELECT now() - interval '{age} days', now(), g, 101 + g % 1000, 2, false, ''
                        FROM slot""" for age in (5, 4)),
                    "UPDATE main_occurrence o SET determination_score = 1.0 FROM slot WHERE o.id = g",
                    """INSERT INTO bench_planted SELECT 'D7', i.id FROM main_identification i JOIN slot ON
                        i.occurrence_id = g WHERE i.created_at < now() - interval '4 days 12 hours'"""),
    "S7": with_slot(record("S7", """INSERT INTO main_identification (created_at, updated_at, occurrence_id, taxon_id,
                        user_id, withdrawn, comment) SELECT now(), now(), g, NULL, 3, false, '' FROM slot
                        RETURNING id""")),
    "C10": with_slot(record("C10", f"""INSERT INTO main_identification (created_at, updated_at, occurrence_id, taxon_id,
                        user_id, withdrawn, comment, agreed_with_prediction_id) SELECT now(), now(), g, 101 + g % 1000,
                        4, false, '', {first_classification(3, "g + 2")} FROM slot RETURNING id"""),
                     "UPDATE main_occurrence o SET determination_score = 1.0 FROM slot WHERE o.id = g"),
    "N2": with_slot(record("N2", classify(detection=MARKER).replace("RETURNING id", "RETURNING detection_id AS id"))),
    "N3": with_slot(record("N3", """INSERT INTO main_detection (id, created_at, updated_at, source_image_id, bbox,
                        "timestamp", detection_algorithm_id) SELECT {offset} + g, now(), now(), s.id, NULL,
                        s."timestamp", 1 FROM slot JOIN main_sourceimage s
                        ON s.id = """ + EMPTY_CAPTURE + " RETURNING id")),
    "N4": with_slot(record("N4", """INSERT INTO main_detection (id, created_at, updated_at, source_image_id, bbox,
                        "timestamp", detection_algorithm_id) SELECT {offset} + g, now(), now(), s.id, NULL,
                        s."timestamp", 1 FROM slot JOIN main_sourceimage s ON s.id = (g + 1) / 2 RETURNING id""")),
    "N5": with_slot(record("N5", fill(DET, set="bbox = '[]'"))),
    "N5b": with_slot(record("N5b", fill(DET, set="bbox = '[50, 10, 40, 50]'"))),
    "N6": with_slot(record("N6", fill(REAL_DETECTION, offset="{offset}", capture="(g + 1) / 2", bbox="'[1, 2, 3, 4]'",
                                                       occurrence="NULL"))),
    "N7": with_slot(record("N7", fill(REAL_DETECTION, offset="{offset}", capture="(g + 1) / 2",
                                                       bbox="'[10, 10, 50, 50]'", occurrence="g")),
                    "INSERT INTO bench_planted SELECT 'F2', g FROM slot"),
    "N8": with_slot(record("N8", fill(DET, set="path = NULL"))),
    "N9": with_slot(record("N9", fill(DET, set="detection_algorithm_id = 6"))),
    "S3": with_slot(record("S3", fill(DET, set="detection_algorithm_id = NULL"))),
    "C7": with_slot(record("C7", fill(DET, set="\"timestamp\" = d.\"timestamp\" + interval '1 hour'"))),
    "S1": with_slot(record("S1", fill(CLS, set="detection_id = NULL", algorithm=4))),
    "S2": with_slot(record("S2", fill(CLS, set="taxon_id = NULL", algorithm=4))),
    "G1": with_slot(record("G1", f"""INSERT INTO main_classification (created_at, updated_at, detection_id, taxon_id,
                        score, "timestamp", terminal, algorithm_id) SELECT c.created_at + interval '1 second', now(), g,
                        c.taxon_id, c.score, now(), c.terminal, 4 FROM slot JOIN main_classification c ON c.id =
                        {first_classification(4)} RETURNING id""")),
    "G4": with_slot(classify(taxon="101 + g % 1000", score="0.55 + (g % 40) / 100.0", terminal="true", algorithm="5",
                             applied=first_classification(3)),
                    "INSERT INTO bench_planted SELECT 'G4', " + first_classification(3) + " FROM slot"),
    "G5": with_slot(record("G5", fill(CLS, set="terminal = true, score = 0.3", algorithm=2))),
    "G6": with_slot(record("G6", fill(CLS, set="score = -0.5", algorithm=4))),
    "C9": with_slot(record("C9", classify(applied=first_classification(3, "g + 2"), algorithm="5", score="0.05"))),
    "C8": with_slot(record("C8", classify(taxon="1103", algorithm="7"))),
    "G2": with_slot(record("G2", classify(taxon="1105", score="0.7", algorithm="7", map="1",
                                          scores="ARRAY[0.1, 0.2, 0.7]", logits="ARRAY[1, 2]::float8[]"))),
    "G3": with_slot(record("G3", classify(taxon="1105", score="0.7", algorithm="7", map="1",
                                          scores="ARRAY[0.7, 0.2, 0.1]", logits="ARRAY[7, 2, 1]::float8[]"))),
    "C1": with_slot(record("C1", fill(CAP, set="project_id = s.project_id % {projects} + 1"))),
    # an ungrouped capture (before the recount: the bounds Antenna's refresh would give its event do not move)
    "C6": with_slot(record("C6", fill(CAP, set="event_id = NULL"))),
    "S6": with_slot(record("S6", fill(CAP, set="deployment_id = NULL, event_id = NULL, \"timestamp\" = NULL")),
                    "UPDATE main_detection d SET \"timestamp\" = NULL FROM slot WHERE d.id = " + MARKER,
                    "INSERT INTO bench_planted SELECT 'C12', " + EMPTY_CAPTURE + " FROM slot"),
    "C11": with_slot("""INSERT INTO main_sourceimagecollection (id, created_at, updated_at, name, description,
                        project_id, method) SELECT {offset} + g, now(), now(), 'mixed', '',
                        s.project_id % {projects} + 1, 'random'
                        FROM slot JOIN main_sourceimage s ON s.id = (g + 1) / 2""",
                     record("C11", """INSERT INTO main_sourceimagecollection_images (sourceimagecollection_id,
                        sourceimage_id) SELECT {offset} + g, (g + 1) / 2 FROM slot RETURNING id""")),
    "S6b": with_slot(record("S6b", """INSERT INTO main_deployment (id, created_at, updated_at, name, description,
                        project_id) SELECT {offset} + g, now(), now(), 'orphan', '', NULL FROM slot RETURNING id""")),
    "E2": with_slot(record("E2", fill(NEW_EVENT, offset="{offset}", end="st", deployment="s.deployment_id",
                                                  project="s.project_id"))),
    "S4": with_slot(record("S4", fill(NEW_EVENT, offset="{offset}", end="st", deployment="NULL",
                                      project="s.project_id")),
                    "INSERT INTO bench_planted SELECT 'E2', {offset} + g FROM slot"),
    "J1": with_slot(record("J1", """INSERT INTO jobs_job (created_at, updated_at, name, queue, status, progress, logs,
                        delay, shuffle, job_type_key, dispatch_mode, project_id, pipeline_id) SELECT now(), now() -
                        interval '1 day', 'stuck', 'default', 'STARTED', '{{}}', '{{}}', 0, true, 'ml', 'internal',
                        s.project_id, 1 FROM slot JOIN main_sourceimage s ON s.id = (g + 1) / 2 RETURNING id""")),
    "J2": with_slot(record("J2", """INSERT INTO jobs_job (created_at, updated_at, name, queue, status, progress, logs,
                        delay, shuffle, job_type_key, dispatch_mode, project_id, pipeline_id) SELECT now(), now(),
                        'done', 'default', 'SUCCESS', '{{}}', '{{}}', 0, true, 'ml', 'internal', s.project_id, 1 FROM
                        slot JOIN main_sourceimage s ON s.id = (g + 1) / 2 RETURNING id""")),
    "J3": with_slot(record("J3", """INSERT INTO jobs_job (created_at, updated_at, name, queue, status, progress, logs,
                        delay, shuffle, job_type_key, dispatch_mode, project_id, finished_at) SELECT now(), now(),
                        'no pipeline', 'default', 'FAILURE', '{{}}', '{{}}', 0, true, 'ml', 'internal', s.project_id,
                        now() FROM slot JOIN main_sourceimage s ON s.id = (g + 1) / 2 RETURNING id""")),
    "J4": with_slot(record("J4", """INSERT INTO jobs_job (created_at, updated_at, name, queue, status, progress, logs,
                        delay, shuffle, job_type_key, dispatch_mode, project_id, pipeline_id, deployment_id,
                        finished_at) SELECT now(), now(), 'elsewhere', 'default', 'SUCCESS', '{{}}', '{{}}', 0, true,
                        'ml', 'internal', s.project_id % {projects} + 1, 1, s.deployment_id, now() FROM slot JOIN
                        main_sourceimage s ON s.id = (g + 1) / 2 RETURNING id""")),
    "K4b": with_slot(*(record("K4b", f"""INSERT INTO main_taxon (id, created_at, updated_at, name, display_name, rank,
                        parent_id, parents_json, active, author, notes) SELECT {{offset}} + 2 * g + {k}, now(), now(),
                        'Loop ' || ({{offset}} + 2 * g + {k}), NULL, 'SPECIES', NULL, '[]', true, '', '' FROM slot
                        RETURNING id""") for k in (0, 1)),
                     "UPDATE main_taxon t SET parent_id = t.id + 1 - 2 * (t.id % 2) FROM slot"
                     " WHERE t.id IN ({offset} + 2 * g, {offset} + 2 * g + 1)",
                     "INSERT INTO bench_planted SELECT 'T2', id FROM bench_planted WHERE rule = 'K4b'"),
    "C12": with_slot(record("C12", fill(NEW_CAPTURE, offset="{offset}", timestamp="NULL", event="NULL"))),
    "W1": with_slot(record("W1", "UPDATE main_sourceimage s SET width = NULL FROM slot WHERE s.id = (g + 1) / 2"
                                 " RETURNING s.id")),
    "X1": with_slot("""INSERT INTO main_site (id, created_at, updated_at, name, description, project_id)
                        SELECT {offset} + d.id, now(), now(), 'elsewhere', '', d.project_id % {projects} + 1
                        FROM main_deployment d WHERE d.id <= LEAST({v}, {deployments})""",
                    record("X1", """UPDATE main_deployment d SET research_site_id = {offset} + d.id
                        WHERE d.id <= LEAST({v}, {deployments}) RETURNING d.id""")),
    # a deployment synced from "night1/" whose captures (not yet dated: no timestamp, no event) lie elsewhere
    "X2": with_slot("""INSERT INTO main_s3storagesource (id, created_at, updated_at, name, bucket, prefix, access_key,
                        secret_key, project_id) VALUES ({offset}, now(), now(), 'bucket', 'moths', '', '', '', 1)""",
                    """INSERT INTO main_deployment (id, created_at, updated_at, name, description, project_id,
                        data_source_id, data_source_subdir) VALUES ({offset}, now(), now(), 'synced', '', 1, {offset},
                        'night1')""",
                    record("X2", """INSERT INTO main_sourceimage (id, created_at, updated_at, path, width, height, size,
                        test_image, project_id, deployment_id) SELECT {offset} + g, now(), now(), 'night2/' || g ||
                        '.jpg', 4096, 3072, 1000, false, 1, {offset} FROM slot RETURNING id"""),
                    "INSERT INTO bench_planted SELECT 'C12', {offset} + g FROM slot"),
    "J5": with_slot(record("J5", """INSERT INTO jobs_job (created_at, updated_at, name, queue, status, progress, logs,
                        delay, shuffle, job_type_key, dispatch_mode, project_id, pipeline_id, finished_at) SELECT now(),
                        now(), 'lost update', 'default', 'FAILURE', '{{"summary": {{"status": "SUCCESS"}}}}', '{{}}', 0,
                        true, 'ml', 'internal', s.project_id, 1, now()
                        FROM slot JOIN main_sourceimage s ON s.id = (g + 1) / 2 RETURNING id""")),
    "JL1": with_slot(record("JL1", """INSERT INTO jobs_joblog (created_at, updated_at, level, message, context, job_id)
                        SELECT now() - interval '200 days', now() - interval '200 days', 'INFO', 'old', '{{}}',
                               (SELECT min(j.id) FROM jobs_job j WHERE j.project_id = s.project_id)
                        FROM slot JOIN main_sourceimage s ON s.id = (g + 1) / 2 RETURNING id""")),
    "B1": with_slot(record("B1", """UPDATE django_celery_beat_periodictask SET enabled = false
                        WHERE name = 'jobs.health_check' RETURNING id""")),
    "TL1": with_slot(*(f"""INSERT INTO main_taxalist (id, created_at, updated_at, name, description)
                        SELECT {{offset}} + 2 * g + {k}, now() + interval '{k} second', now(), 'list ' || g, ''
                        FROM slot""" for k in (0, 1)),
                     "INSERT INTO bench_planted SELECT 'TL1', {offset} + 2 * g + 1 FROM slot"),
    "TL1b": with_slot(record("TL1b", """INSERT INTO main_taxalist (id, created_at, updated_at, name, description) SELECT
                        {offset} + g, now(), now(), 'list ' || g || ' (duplicate 2)', '' FROM slot RETURNING id""")),
    "T2": with_slot(record("T2", """INSERT INTO main_taxon (id, created_at, updated_at, name, display_name, rank,
                        parent_id, parents_json, active, author, notes) SELECT {offset} + g, now(), now(),
                        'Nogenus species' || g, NULL, 'SPECIES', 2, '[]', true, '', '' FROM slot RETURNING id""")),
    "T2b": with_slot(record("T2b", """INSERT INTO main_taxon (id, created_at, updated_at, name, display_name, rank,
                        parent_id, parents_json, active, author, notes) SELECT {offset} + g, now(), now(),
                        'label ' || g, NULL, 'UNKNOWN', NULL, '[]', true, '', '' FROM slot RETURNING id""")),
    "T3": with_slot(record("T3", """UPDATE main_taxon t SET synonym_of_id = 1 FROM slot WHERE t.id = 101 + g % 1000
                        RETURNING t.id""")),
    "T3b": with_slot(*(record("T3b", f"""INSERT INTO main_taxon (id, created_at, updated_at, name, display_name, rank,
                        parent_id, parents_json, active, author, notes) SELECT {{offset}} + 2 * g + {k}, now(), now(),
                        'Genus7 synonym' || ({{offset}} + 2 * g + {k}), NULL, 'SPECIES', 7, '[]', true, '', '' FROM slot
                        RETURNING id""") for k in (0, 1)),
                     """UPDATE main_taxon t SET synonym_of_id = t.id + 1 - 2 * (t.id % 2) FROM slot
                        WHERE t.id IN ({offset} + 2 * g, {offset} + 2 * g + 1)"""),
}
for _rule, _ends, _set in (("E1", "st - interval '1 hour'", "E1"), ("E3", "st + interval '30 hours'", "E3"),
                           ("C2", "st + interval '1 hour'", "C2")):
    # an event with one capture without a timestamp (which nothing bounds), so it is not empty
    PLANTS[_rule] = with_slot(
        record(_rule, fill(NEW_EVENT, offset="{offset}", end=_ends, deployment="s.deployment_id",
                                       project="s.project_id % {projects} + 1" if _rule == "C2" else "s.project_id")),
        record("C12", fill(NEW_CAPTURE, offset="{offset}", timestamp="NULL", event="{offset} + g")),
    )

# cached fields: made stale after the recount (on captures, events, deployments, taxa the base already has)
STALE = {
    "K1": "UPDATE main_sourceimage s SET detections_count = detections_count + 1 FROM slot"
          " WHERE s.id = " + EMPTY_CAPTURE + " RETURNING s.id",
    "K2": "UPDATE main_event e SET captures_count = captures_count + 1 FROM slot"
          " WHERE e.id = (SELECT event_id FROM main_sourceimage WHERE id = " + EMPTY_CAPTURE + ") RETURNING e.id",
    "K3": "UPDATE main_deployment d SET taxa_count = taxa_count + 1 WHERE d.id <= LEAST({v}, {deployments})"
          " RETURNING d.id",
    "K4": "UPDATE main_taxon t SET parents_json = '[]' FROM slot WHERE t.id = 101 + g % 1000 RETURNING t.id",
}
# E1 and E3 bounds set after the recount (which gives an event with an untimed capture an open end, as Antenna's
# refresh does): the same events are then also K2's
REBOUND = {
    rule: [f"""WITH x AS (UPDATE main_event e SET "end" = e.start + interval '{shift}' FROM bench_planted p
               WHERE p.rule = '{rule}' AND p.id = e.id RETURNING e.id)
               INSERT INTO bench_planted SELECT 'K2', id FROM x"""]
    for rule, shift in (("E1", "-1 hour"), ("E3", "30 hours"))
}
SLOT_RULES = sorted(PLANTS) + ["K1", "K2", "K4"]


def layout(occurrences: int, projects: int, interleaved: bool = False) -> dict:
    """The base's dimensions.  Captures (and so the occurrences, detections and classifications built on them)
    are stored deployment after deployment, as Antenna's per-deployment syncs and processing jobs write them;
    ``interleaved`` deals them to the deployments in turn instead, so that every page holds every project
    (the worst case for a scoped run; docs/benchmarks.md, figure 5)."""
    n = max(2, occurrences - occurrences % 2)
    deployments = 2 * projects
    per_deployment = -(-(n // 2) // deployments)
    nights = max(1, -(-per_deployment // CAPTURES_PER_NIGHT))
    if interleaved:  # capture base + 1 is the next deployment's; base + deployments the next of the same one
        order = {"deployment_of_base": f"base % {deployments} + 1", "rank_of_base": f"base / {deployments}",
                 "next_capture": deployments}
    else:
        order = {"deployment_of_base": f"base / {per_deployment} + 1", "rank_of_base": f"base % {per_deployment}",
                 "next_capture": 1}
    return {"n": n, "h": n // 2, "projects": projects, "deployments": deployments, "nights": nights,
            "per_night": CAPTURES_PER_NIGHT, "interleaved": interleaved} | order


def generate(
    cursor, occurrences: int, violations: int, projects: int = 20, log=print, interleaved: bool = False
) -> dict:
    """Fill an empty Antenna-shaped database (mirror migrations or Antenna's schema.sql); returns the layout."""
    shape = layout(occurrences, projects, interleaved)
    cursor.execute(BASE % shape)
    log(f"base: {shape['n']:,} occurrences over {projects} projects")
    unit = 4 * len(SLOT_RULES)  # the slots' rows interleave; a stride of whole units spreads them over the base
    stride = unit * max(1, shape["n"] // (unit * max(violations, 1)))
    if unit + stride * (violations - 1) > shape["n"]:
        log(f"note: {violations} violations per rule do not fit {shape['n']} occurrences; fewer are planted")
    offset = 20 * shape["n"]
    for rule_id, statements in PLANTS.items():
        index = SLOT_RULES.index(rule_id)
        for statement in statements:
            planted = slot(index, stride, shape["n"], violations)
            cursor.execute(statement.format(slot=planted, offset=offset, v=violations, **shape))
        offset += 10 * shape["n"]
    _reset_sequences(cursor)
    _compute_caches()
    for rule_id, statement in STALE.items():
        (sql,) = with_slot(record(rule_id, statement))
        index = SLOT_RULES.index(rule_id) if rule_id in SLOT_RULES else 0
        cursor.execute(sql.format(slot=slot(index, stride, shape["n"], violations), v=violations, **shape))
    for statements in REBOUND.values():
        for sql in statements:
            cursor.execute(sql)
    cursor.execute("ANALYZE")
    return shape


def _reset_sequences(cursor):
    """Rows were inserted with explicit ids: move every id sequence past them."""
    from antenna_invariants.schema import mirror_models

    for table in sorted({model._meta.db_table for model in mirror_models()}):
        cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                       f"greatest((SELECT max(id) FROM \"{table}\"), 1))")


def _compute_caches():
    """The cached fields as Antenna would have left them on healthy data: the suite's own recounts."""
    from harness import load_rules

    rules = load_rules()
    for rule_id in ("K4", "K1", "K2", "K3"):
        entry = rules[rule_id]
        entry.repair_func(entry.model.objects.all())


def planted(cursor) -> dict[str, set[int]]:
    cursor.execute("SELECT rule, id FROM bench_planted")
    found: dict[str, set[int]] = {}
    for rule_id, row_id in cursor.fetchall():
        found.setdefault(rule_id, set()).add(row_id)
    return found
