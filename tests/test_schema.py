"""The mirror against Antenna's real DDL (shared/antenna/schema.sql), and the run-time drift guard."""

import psycopg
import pytest
from django.db import connection

from antenna_invariants import schema
from antenna_invariants.connection import url_for
from conftest import create_database_from_schema, drop_database


@pytest.fixture(scope="module")
def antenna_database(antenna_schema, django_db_blocker):
    with django_db_blocker.unblock():
        settings = dict(connection.settings_dict)
    name = f"{settings['TEST']['NAME']}_compat"
    create_database_from_schema(settings, name, antenna_schema)
    with psycopg.connect(url_for(settings, name), autocommit=True) as database:
        yield database
    drop_database(settings, name)


def test_every_mirrored_column_exists_in_antenna_with_the_same_type_and_nullability(antenna_database):
    assert schema.differences(antenna_database.cursor()) == []


def test_the_mirror_covers_the_tables_the_issue_names(antenna_database):
    wanted = {
        "main_project", "main_deployment", "main_event", "main_sourceimage", "main_detection",
        "main_classification", "main_occurrence", "main_identification", "main_taxon", "ml_algorithm",
        "ml_pipeline", "ml_pipeline_algorithms", "main_sourceimagecollection",
        "main_sourceimagecollection_images", "jobs_job", "users_user",
        # issue 16's rules: the watchdogs (B1), taxa lists (TL1), job logs (JL1), what a deployment links (X1)
        "django_celery_beat_periodictask", "django_celery_beat_crontabschedule", "django_celery_beat_intervalschedule",
        "main_taxalist", "main_taxalist_taxa", "main_taxalist_projects", "jobs_joblog", "main_site", "main_device",
        "main_s3storagesource",
    }
    assert wanted <= set(schema.mirror_columns())


def test_differences_name_a_dropped_column_and_a_type_change(antenna_database):
    cursor = antenna_database.cursor()
    cursor.execute("BEGIN")
    try:
        cursor.execute("ALTER TABLE main_detection DROP COLUMN bbox")
        cursor.execute("ALTER TABLE main_occurrence ALTER COLUMN determination_score TYPE numeric")
        cursor.execute("ALTER TABLE main_taxon ADD COLUMN required_thing text NOT NULL")
        problems = schema.differences(cursor)
    finally:
        cursor.execute("ROLLBACK")
    assert "column main_detection.bbox is missing" in problems
    assert "column main_occurrence.determination_score is numeric, the mirror says double precision" in problems
    assert "column main_taxon.required_thing is NOT NULL without a default but not in the mirror" in problems
    assert len(problems) == 3


def test_guard_passes_on_the_self_test_database(db):
    schema.guard()
