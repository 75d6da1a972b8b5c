"""The floor: one hand-written COUNT per rule over the whole database, the least work any tool could do.

Each query counts the same violators as the rule (the self-test tests/test_bench.py checks that they agree
with the engine and with what the generator planted).  Seven rules are defined by one shared statement (the
expected determination, the recounts, the taxon chain); their floor is that statement run once, unscoped.
"""

from __future__ import annotations

from antenna_invariants.filters import passes_default_filters

DETECTORS = "('detection', 'localization', 'segmentation')"
RUNNING = "('PENDING', 'STARTED', 'RETRY', 'CANCELING', 'UNKNOWN')"
FINAL = "('SUCCESS', 'FAILURE', 'REVOKED')"
IS_BOX = """CASE WHEN jsonb_typeof(bbox) = 'array' THEN jsonb_array_length(bbox) = 4
    AND jsonb_typeof(bbox->0) = 'number' AND jsonb_typeof(bbox->1) = 'number'
    AND jsonb_typeof(bbox->2) = 'number' AND jsonb_typeof(bbox->3) = 'number' ELSE false END"""
FIRST_CAPTURE = """(SELECT s.{field} FROM main_detection d JOIN main_sourceimage s ON s.id = d.source_image_id
    WHERE d.occurrence_id = o.id ORDER BY s."timestamp", s.id, d.id LIMIT 1)"""
MACHINE = """EXISTS (SELECT 1 FROM main_detection d JOIN main_classification c ON c.detection_id = d.id
    WHERE d.occurrence_id = o.id AND d.bbox IS NOT NULL AND c.taxon_id IS NOT NULL)"""
HUMAN = """EXISTS (SELECT 1 FROM main_identification i
    WHERE i.occurrence_id = o.id AND NOT i.withdrawn AND i.taxon_id IS NOT NULL)"""

FLOOR = {
    "S6": "SELECT count(*) FROM main_sourceimage WHERE deployment_id IS NULL OR project_id IS NULL",
    "S6b": "SELECT count(*) FROM main_deployment WHERE project_id IS NULL",
    "C1": """SELECT count(*) FROM main_sourceimage s JOIN main_deployment d ON d.id = s.deployment_id
             WHERE s.project_id IS DISTINCT FROM d.project_id""",
    "C6": """SELECT count(*) FROM main_sourceimage s LEFT JOIN main_event e ON e.id = s.event_id
             WHERE (e.id IS NOT NULL AND e.deployment_id IS DISTINCT FROM s.deployment_id)
                OR (s."timestamp" IS NOT NULL AND s.event_id IS NULL)
                OR s."timestamp" < e.start OR s."timestamp" > e."end\"""",
    "C11": """SELECT count(*) FROM main_sourceimagecollection_images m
             JOIN main_sourceimagecollection c ON c.id = m.sourceimagecollection_id
             JOIN main_sourceimage s ON s.id = m.sourceimage_id WHERE s.project_id IS DISTINCT FROM c.project_id""",
    "S1": "SELECT count(*) FROM main_classification WHERE detection_id IS NULL",
    "S2": "SELECT count(*) FROM main_classification WHERE taxon_id IS NULL OR algorithm_id IS NULL",
    "C8": """SELECT count(*) FROM main_classification c JOIN ml_algorithm a ON a.id = c.algorithm_id
             WHERE a.category_map_id IS NOT NULL AND c.category_map_id IS DISTINCT FROM a.category_map_id""",
    "C9": """SELECT count(*) FROM main_classification c JOIN main_classification s ON s.id = c.applied_to_id
             WHERE c.detection_id IS DISTINCT FROM s.detection_id""",
    "G1": """SELECT count(*) - count(DISTINCT (detection_id, taxon_id, algorithm_id, score)) FROM main_classification
             WHERE detection_id IS NOT NULL""",
    "G2": """SELECT count(*) FROM main_classification c LEFT JOIN ml_algorithmcategorymap m ON m.id = c.category_map_id
             WHERE (c.scores IS NOT NULL AND c.score IS DISTINCT FROM (SELECT max(s) FROM unnest(c.scores) s))
                OR cardinality(c.scores) <> cardinality(m.labels) OR cardinality(c.logits) <> cardinality(m.labels)""",
    "G3": """SELECT count(*) FROM main_classification c JOIN ml_algorithmcategorymap m ON m.id = c.category_map_id
             JOIN main_taxon t ON t.id = c.taxon_id
             WHERE t.name <> m.labels[array_position(c.scores, (SELECT max(s) FROM unnest(c.scores) s))]""",
    "G4": """SELECT count(*) FROM main_classification c WHERE c.terminal AND EXISTS (
                SELECT 1 FROM main_classification d WHERE d.applied_to_id = c.id AND d.terminal)""",
    "G5": """SELECT count(*) FROM main_classification c JOIN main_taxon t ON t.id = c.taxon_id
             WHERE c.terminal AND lower(t.name) IN ('moth', 'non-moth', 'nonmoth')""",
    "G6": "SELECT count(*) FROM main_classification WHERE score < 0 OR score > 1",
    "S3": "SELECT count(*) FROM main_detection WHERE detection_algorithm_id IS NULL",
    "N1": "SELECT count(*) FROM main_detection WHERE bbox IS NULL AND occurrence_id IS NOT NULL",
    "N2": """SELECT count(*) FROM main_detection d WHERE d.bbox IS NULL
             AND EXISTS (SELECT 1 FROM main_classification c WHERE c.detection_id = d.id)""",
    "N3": """SELECT count(*) - count(DISTINCT (source_image_id, detection_algorithm_id)) FROM main_detection
             WHERE bbox IS NULL""",
    "N4": """SELECT count(*) FROM main_detection m WHERE m.bbox IS NULL AND EXISTS (
                SELECT 1 FROM main_detection d WHERE d.source_image_id = m.source_image_id
                   AND d.detection_algorithm_id = m.detection_algorithm_id AND d.bbox IS NOT NULL)""",
    "N5": f"SELECT count(*) FROM main_detection WHERE bbox IS NOT NULL AND NOT ({IS_BOX})",
    "N5b": f"""SELECT count(*) FROM main_detection d JOIN main_sourceimage s ON s.id = d.source_image_id,
             LATERAL (SELECT (bbox->>0)::float8 x1, (bbox->>1)::float8 y1, (bbox->>2)::float8 x2,
                             (bbox->>3)::float8 y2 WHERE {IS_BOX}) b
             WHERE x1 >= x2 OR y1 >= y2 OR least(x1, y1) < 0 OR x2 > s.width OR y2 > s.height""",
    "N6": "SELECT count(*) FROM main_detection WHERE bbox IS NOT NULL AND occurrence_id IS NULL",
    "N7": "SELECT count(*) - count(DISTINCT (source_image_id, bbox)) FROM main_detection WHERE bbox IS NOT NULL",
    "N8": """SELECT count(*) FROM main_detection WHERE bbox IS NOT NULL AND created_at < now() - interval '1 day'
             AND (path IS NULL OR path = '')""",
    "N9": f"""SELECT count(*) FROM main_detection d JOIN ml_algorithm a ON a.id = d.detection_algorithm_id
             WHERE a.task_type IS NULL OR a.task_type NOT IN {DETECTORS}""",
    "C7": """SELECT count(*) FROM main_detection d JOIN main_sourceimage s ON s.id = d.source_image_id
             WHERE d."timestamp" IS DISTINCT FROM s."timestamp\"""",
    "S4": "SELECT count(*) FROM main_event WHERE deployment_id IS NULL",
    "C2": """SELECT count(*) FROM main_event e JOIN main_deployment d ON d.id = e.deployment_id
             WHERE e.project_id IS DISTINCT FROM d.project_id""",
    "E1": """SELECT count(*) FROM main_event WHERE "end" < start""",
    "E2": """SELECT count(*) FROM main_event e
             WHERE NOT EXISTS (SELECT 1 FROM main_sourceimage s WHERE s.event_id = e.id)
             AND NOT EXISTS (SELECT 1 FROM main_occurrence o WHERE o.event_id = e.id)""",
    "E3": """SELECT count(*) FROM main_event WHERE "end" > start + interval '24 hours'
             OR group_by <> to_char(start AT TIME ZONE 'America/New_York', 'YYYY-MM-DD')""",
    "S7": "SELECT count(*) FROM main_identification WHERE NOT withdrawn AND taxon_id IS NULL",
    "C10": """SELECT count(*) FROM main_identification i
             LEFT JOIN main_identification a ON a.id = i.agreed_with_identification_id
             LEFT JOIN main_classification c ON c.id = i.agreed_with_prediction_id
             LEFT JOIN main_detection d ON d.id = c.detection_id
             WHERE a.occurrence_id <> i.occurrence_id
                OR (c.id IS NOT NULL AND d.occurrence_id IS DISTINCT FROM i.occurrence_id)""",
    "D7": """SELECT count(*) FROM main_identification i WHERE NOT i.withdrawn AND i.user_id IS NOT NULL AND EXISTS (
                SELECT 1 FROM main_identification n WHERE n.occurrence_id = i.occurrence_id AND n.user_id = i.user_id
                   AND NOT n.withdrawn AND (n.created_at, n.id) > (i.created_at, i.id))""",
    "J1": f"""SELECT count(*) FROM jobs_job WHERE status IN {RUNNING} AND updated_at < now() - interval '10 minutes'""",
    "J2": f"SELECT count(*) FROM jobs_job WHERE status IN {FINAL} AND finished_at IS NULL",
    "J3": """SELECT count(*) FROM jobs_job WHERE (job_type_key = 'ml' AND pipeline_id IS NULL)
             OR (job_type_key IN ('data_storage_sync', 'regroup_events') AND deployment_id IS NULL)
             OR (job_type_key = 'populate_captures_collection' AND source_image_collection_id IS NULL)
             OR (job_type_key = 'data_export' AND data_export_id IS NULL)""",
    "J4": """SELECT count(*) FROM jobs_job j LEFT JOIN main_deployment d ON d.id = j.deployment_id
             LEFT JOIN main_sourceimagecollection c ON c.id = j.source_image_collection_id
             LEFT JOIN main_sourceimage s ON s.id = j.source_image_single_id
             WHERE (d.id IS NOT NULL AND d.project_id IS DISTINCT FROM j.project_id)
                OR (c.id IS NOT NULL AND c.project_id IS DISTINCT FROM j.project_id)
                OR (s.id IS NOT NULL AND s.project_id IS DISTINCT FROM j.project_id)""",
    "D1": f"SELECT count(*) FROM main_occurrence o WHERE o.determination_id IS NULL AND ({MACHINE} OR {HUMAN})",
    "F1": """SELECT count(*) FROM main_occurrence o WHERE NOT EXISTS (
                SELECT 1 FROM main_detection d WHERE d.occurrence_id = o.id AND d.bbox IS NOT NULL)""",
    "F2": """SELECT count(*) FROM (SELECT occurrence_id FROM main_detection WHERE bbox IS NOT NULL
             AND occurrence_id IS NOT NULL GROUP BY occurrence_id HAVING count(*) > 1) f""",
    "D5": f"""SELECT count(*) FROM main_occurrence o
             WHERE o.determination_id IS NOT NULL AND NOT {MACHINE} AND NOT {HUMAN}""",
    "D6": "SELECT count(*) FROM main_occurrence WHERE determination_score < 0 OR determination_score > 1",
    "S5": "SELECT count(*) FROM main_occurrence WHERE project_id IS NULL OR deployment_id IS NULL OR event_id IS NULL",
    "C3": """SELECT count(*) FROM main_occurrence o JOIN main_deployment d ON d.id = o.deployment_id
             WHERE o.project_id IS DISTINCT FROM d.project_id""",
    "C4": f"""SELECT count(*) FROM main_occurrence o WHERE EXISTS (
                SELECT 1 FROM main_detection d JOIN main_sourceimage s ON s.id = d.source_image_id
                 WHERE d.occurrence_id = o.id
                   AND s.deployment_id IS DISTINCT FROM
                       coalesce(o.deployment_id, {FIRST_CAPTURE.format(field="deployment_id")}))""",
    "C5": f"""SELECT count(*) FROM main_occurrence o
             WHERE o.event_id IS DISTINCT FROM {FIRST_CAPTURE.format(field='event_id')}""",
    "K1": f"""WITH truth AS (
                SELECT d.source_image_id AS id, count(*) AS n FROM main_detection d
                  JOIN main_sourceimage s ON s.id = d.source_image_id
                  LEFT JOIN main_occurrence o ON o.id = d.occurrence_id
                 WHERE d.bbox IS NOT NULL AND {passes_default_filters("o", "s.project_id")} GROUP BY 1)
             SELECT count(*) FROM main_sourceimage s LEFT JOIN truth t ON t.id = s.id
             WHERE s.detections_count IS DISTINCT FROM coalesce(t.n, 0)""",
}


FLOOR |= {
    "J5": f"""SELECT count(*) FROM jobs_job WHERE progress -> 'summary' ->> 'status' <> status
             OR started_at > finished_at
             OR (status = 'SUCCESS' AND jsonb_typeof(progress -> 'stages') = 'array' AND EXISTS (
                 SELECT 1 FROM jsonb_array_elements(progress -> 'stages') s
                  WHERE jsonb_typeof(s -> 'progress') IS DISTINCT FROM 'number' OR (s ->> 'progress')::float8 < 1
                     OR s ->> 'status' IS NULL OR s ->> 'status' NOT IN {FINAL}))""",
    "JL1": "SELECT count(*) FROM jobs_joblog WHERE created_at < now() - interval '90 days'",
    "B1": """SELECT count(*) + 2 - (SELECT count(*) FROM django_celery_beat_periodictask
                                     WHERE name IN ('jobs.health_check', 'celery.check_processing_services_online'))
             FROM django_celery_beat_periodictask t
             LEFT JOIN django_celery_beat_crontabschedule c ON c.id = t.crontab_id
             LEFT JOIN django_celery_beat_intervalschedule i ON i.id = t.interval_id
             WHERE t.name IN ('jobs.health_check', 'celery.check_processing_services_online')
               AND (NOT t.enabled OR t.last_run_at IS NULL OR t.last_run_at < now() - interval '5 minutes' - 2 *
                    CASE WHEN i.id IS NOT NULL THEN i.every * ('1 ' || i.period)::interval
                         WHEN c.hour = '*' AND c.minute LIKE '*/%'
                              THEN split_part(c.minute, '/', 2)::int * interval '1 minute'
                         ELSE interval '1 day' END)""",
    "TL1": """SELECT count(*) FROM main_taxalist l WHERE EXISTS (
                SELECT 1 FROM main_taxalist o WHERE o.name = l.name AND (o.created_at, o.id) < (l.created_at, l.id)
                   AND (coalesce((SELECT array_agg(project_id) FROM main_taxalist_projects
                                   WHERE taxalist_id = l.id), '{}')
                        && coalesce((SELECT array_agg(project_id) FROM main_taxalist_projects
                                      WHERE taxalist_id = o.id), '{}')
                     OR NOT EXISTS (SELECT 1 FROM main_taxalist_projects WHERE taxalist_id IN (l.id, o.id))))""",
    "TL1b": r"SELECT count(*) FROM main_taxalist WHERE name ~ ' \(duplicate [0-9]+\)$'",
    "T2": """SELECT count(*) FROM main_taxon t LEFT JOIN main_taxon p ON p.id = t.parent_id
             WHERE (t.rank = 'SPECIES'
                    AND (p.id IS NULL OR p.rank <> 'GENUS' OR p.name <> split_part(t.name, ' ', 1)))
                OR (p.rank <> 'UNKNOWN' AND t.rank <> 'UNKNOWN'
                    AND array_position(ARRAY['KINGDOM', 'PHYLUM', 'CLASS', 'ORDER', 'SUPERFAMILY', 'FAMILY',
                    'SUBFAMILY', 'TRIBE', 'SUBTRIBE', 'GENUS', 'SPECIES'], p.rank::text)
                    >= array_position(ARRAY['KINGDOM', 'PHYLUM', 'CLASS', 'ORDER', 'SUPERFAMILY', 'FAMILY', 'SUBFAMILY',
                    'TRIBE', 'SUBTRIBE', 'GENUS', 'SPECIES'], t.rank::text))""",
    "T2b": "SELECT count(*) - 1 FROM main_taxon WHERE parent_id IS NULL",  # the base has one root, Lepidoptera
    "T3": """SELECT count(*) FROM main_taxon t WHERE (t.synonym_of_id IS NOT NULL OR NOT t.active)
             AND (EXISTS (SELECT 1 FROM main_occurrence o WHERE o.determination_id = t.id)
               OR EXISTS (SELECT 1 FROM main_classification c WHERE c.taxon_id = t.id)
               OR EXISTS (SELECT 1 FROM main_identification i WHERE i.taxon_id = t.id AND NOT i.withdrawn))""",
    "T3b": """SELECT count(*) FROM main_taxon t JOIN main_taxon s ON s.id = t.synonym_of_id
             WHERE s.synonym_of_id IS NOT NULL""",
    "C12": """SELECT count(*) FROM main_sourceimage WHERE "timestamp" IS NULL OR "timestamp" < '2000-01-01'
             OR "timestamp" > created_at + interval '1 day'
             OR ((uploaded_by_id IS NOT NULL OR test_image) AND date_trunc('second', "timestamp") <> "timestamp"
                 AND "timestamp" BETWEEN created_at - interval '5 minutes' AND created_at)""",
    "W1": """SELECT count(*) FROM main_sourceimage s WHERE (s.width IS NULL OR s.height IS NULL OR s.width < 1
             OR s.height < 1)
             AND EXISTS (SELECT 1 FROM main_detection d WHERE d.source_image_id = s.id AND d.bbox IS NOT NULL)""",
    "X1": """SELECT count(*) FROM main_deployment d LEFT JOIN main_site s ON s.id = d.research_site_id
             LEFT JOIN main_device v ON v.id = d.device_id LEFT JOIN main_s3storagesource x ON x.id = d.data_source_id
             WHERE s.project_id IS DISTINCT FROM d.project_id AND s.project_id IS NOT NULL
                OR v.project_id IS DISTINCT FROM d.project_id AND v.project_id IS NOT NULL
                OR x.project_id IS DISTINCT FROM d.project_id AND x.project_id IS NOT NULL""",
    "X2": """SELECT count(*) FROM main_sourceimage s JOIN main_deployment d ON d.id = s.deployment_id
             JOIN main_s3storagesource x ON x.id = d.data_source_id
             WHERE NOT s.test_image AND s.uploaded_by_id IS NULL
               AND s.path NOT LIKE ltrim(x.prefix || '/' || d.data_source_subdir, '/') || '/%'""",
}


def shared_statement_floors() -> dict[str, str]:
    """D2, D3, D4, K2, K3, K4, K4b: the rule's own defining statement, over the whole table, counted once."""
    from antenna_invariants.determination import EXPECTED_SQL
    from invariants.test_counts import DEPLOYMENTS, EVENTS
    from invariants.test_occurrences import HALF_SET, WRONG_SCORE, WRONG_TAXON, ZERO_LEFT_NULL
    from invariants.test_taxa import EXPECTED_SQL as TAXA_SQL
    from invariants.test_taxa import RANKS

    expected = EXPECTED_SQL.format(target="SELECT id FROM main_occurrence")
    ranks = ", ".join(f"'{rank}'" for rank in RANKS)
    taxa = TAXA_SQL.format(target="SELECT id FROM main_taxon", ranks=ranks)
    floors = {
        "D2": f"SELECT count(*) FROM ({expected}) e JOIN main_occurrence o ON o.id = e.occurrence_id"
              f" WHERE {WRONG_TAXON}",
        "D3": f"SELECT count(*) FROM ({expected}) e JOIN main_occurrence o ON o.id = e.occurrence_id"
              f" WHERE {WRONG_SCORE}",
        "D4": f"""SELECT count(*) FROM ({expected}) e JOIN main_occurrence o ON o.id = e.occurrence_id
                  WHERE {HALF_SET} AND NOT ({ZERO_LEFT_NULL})""",
        "K4": f"""{taxa} SELECT count(*) FROM expected e JOIN main_taxon t ON t.id = e.id WHERE NOT e.cyclic
                  AND (t.parents_json, t.display_name) IS DISTINCT FROM (e.parents_json, e.display_name)""",
        "K4b": f"{taxa} SELECT count(*) FROM expected e WHERE e.cyclic",
    }
    for rule_id, recount in (("K2", EVENTS), ("K3", DEPLOYMENTS)):
        truth = recount.template.format(target=f"SELECT id FROM {recount.table}")
        floors[rule_id] = (
            f"SELECT count(*) FROM ({truth}) t JOIN {recount.table} x ON x.id = t.id WHERE {recount.differs()}"
        )
    return floors


def floors() -> dict[str, str]:
    return FLOOR | shared_statement_floors()
