"""Antenna's tables, mirrored as Django models under their real names.

Written from the fact sheet (antenna-data-model.md §1), not from Antenna's code.  Only the columns the
rules read or the factories must fill are declared; every NOT NULL column without a default is declared,
because Antenna has no database defaults.  Foreign keys to tables we do not mirror are plain integers.

Each model says how it is reached from a scope (see ``antenna_invariants.scope``):
``project`` – the lookup path of its project; ``images`` – the path to the capture(s) it belongs to;
``algorithms`` – paths to the algorithms that produced it; ``occurrences`` – the path to its occurrence.
A model without ``project`` is global (taxa, algorithms).
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone


class Base(models.Model):
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    scope_paths: dict[str, str | list[str]] = {}  # scope -> lookup path (or paths) from this table

    class Meta:
        abstract = True


class User(models.Model):
    password = models.CharField(max_length=128, default="!")
    last_login = models.DateTimeField(null=True)
    is_superuser = models.BooleanField(default=False)
    email = models.CharField(max_length=254, default="")
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    name = models.CharField(max_length=255, default="")
    image = models.CharField(max_length=100, null=True)

    class Meta:
        db_table = "users_user"


class Taxon(Base):
    name = models.CharField(max_length=255, unique=True)
    display_name = models.CharField(max_length=255, null=True, unique=True)
    rank = models.CharField(max_length=255, default="SPECIES")
    parent = models.ForeignKey("self", null=True, on_delete=models.SET_NULL, related_name="children")
    parents_json = models.JSONField(default=list)
    synonym_of = models.ForeignKey("self", null=True, on_delete=models.SET_NULL, related_name="synonyms")
    active = models.BooleanField(default=True)
    author = models.CharField(max_length=255, default="")
    notes = models.TextField(default="")
    ordering = models.IntegerField(null=True)  # Antenna's default order of taxa (its TaxonManager.root() reads it)

    class Meta:
        db_table = "main_taxon"


class AlgorithmCategoryMap(Base):
    data = models.JSONField(default=list)
    labels = ArrayField(models.CharField(max_length=255), default=list)
    version = models.CharField(max_length=255, null=True)
    description = models.TextField(null=True)
    labels_hash = models.BigIntegerField(null=True)
    uri = models.CharField(max_length=255, null=True)

    class Meta:
        db_table = "ml_algorithmcategorymap"


class Algorithm(Base):
    name = models.CharField(max_length=255)
    key = models.CharField(max_length=255, unique=True)
    description = models.TextField(default="")
    version = models.IntegerField(default=1)
    version_name = models.CharField(max_length=255, null=True)
    task_type = models.CharField(max_length=255, null=True, default="unknown")
    uri = models.CharField(max_length=255, null=True)
    category_map = models.ForeignKey(
        AlgorithmCategoryMap, null=True, on_delete=models.CASCADE, related_name="algorithms"
    )

    class Meta:
        db_table = "ml_algorithm"


class Pipeline(Base):
    name = models.CharField(max_length=255)
    slug = models.CharField(max_length=255, unique=True)
    description = models.TextField(default="")
    version = models.IntegerField(default=1)
    version_name = models.CharField(max_length=255, default="")
    stages = models.JSONField(default=list)
    default_config = models.JSONField(default=dict)
    algorithms = models.ManyToManyField(Algorithm, related_name="pipelines", db_table="ml_pipeline_algorithms")

    class Meta:
        db_table = "ml_pipeline"


class Project(Base):
    name = models.CharField(max_length=80)
    description = models.TextField(default="")
    image = models.CharField(max_length=100, null=True)
    owner = models.ForeignKey(User, null=True, on_delete=models.SET_NULL)
    draft = models.BooleanField(default=False)
    feature_flags = models.JSONField(default=dict)
    active = models.BooleanField(default=True)
    priority = models.IntegerField(default=1)
    default_processing_pipeline = models.ForeignKey(Pipeline, null=True, on_delete=models.SET_NULL)
    session_time_gap_seconds = models.IntegerField(default=7200)
    default_filters_score_threshold = models.FloatField(default=0.5)
    default_filters_include_taxa = models.ManyToManyField(
        Taxon, related_name="+", db_table="main_project_default_filters_include_taxa"
    )
    default_filters_exclude_taxa = models.ManyToManyField(
        Taxon, related_name="+", db_table="main_project_default_filters_exclude_taxa"
    )

    class Meta:
        db_table = "main_project"


class Deployment(Base):
    name = models.CharField(max_length=80)
    description = models.TextField(default="")
    latitude = models.FloatField(null=True)
    longitude = models.FloatField(null=True)
    image = models.CharField(max_length=100, null=True)
    project = models.ForeignKey(Project, null=True, on_delete=models.SET_NULL, related_name="deployments")
    data_source_id = models.BigIntegerField(null=True)
    research_site_id = models.BigIntegerField(null=True)
    device_id = models.BigIntegerField(null=True)
    data_source_subdir = models.CharField(max_length=255, null=True)
    data_source_regex = models.CharField(max_length=255, null=True)
    data_source_last_checked = models.DateTimeField(null=True)
    data_source_total_files = models.IntegerField(null=True)
    data_source_total_size = models.BigIntegerField(null=True)
    events_count = models.IntegerField(null=True)
    occurrences_count = models.IntegerField(null=True)
    captures_count = models.IntegerField(null=True)
    detections_count = models.IntegerField(null=True)
    taxa_count = models.IntegerField(null=True)
    first_capture_timestamp = models.DateTimeField(null=True)
    last_capture_timestamp = models.DateTimeField(null=True)

    scope_paths = {"project": "project", "images": "captures"}

    class Meta:
        db_table = "main_deployment"


class Event(Base):
    group_by = models.CharField(max_length=255)
    start = models.DateTimeField()
    end = models.DateTimeField(null=True)
    project = models.ForeignKey(Project, null=True, on_delete=models.SET_NULL, related_name="events")
    deployment = models.ForeignKey(Deployment, null=True, on_delete=models.SET_NULL, related_name="events")
    captures_count = models.IntegerField(null=True)
    detections_count = models.IntegerField(null=True)
    occurrences_count = models.IntegerField(null=True)
    calculated_fields_updated_at = models.DateTimeField(null=True)

    scope_paths = {"project": "project", "images": "captures"}

    class Meta:
        db_table = "main_event"
        constraints = [models.UniqueConstraint(fields=["deployment", "group_by"], name="unique_event")]


class SourceImage(Base):
    path = models.CharField(max_length=255, default="")
    public_base_url = models.CharField(max_length=255, null=True)
    timestamp = models.DateTimeField(null=True)
    width = models.IntegerField(null=True)
    height = models.IntegerField(null=True)
    size = models.BigIntegerField(null=True)
    last_modified = models.DateTimeField(null=True)
    checksum = models.CharField(max_length=255, null=True)
    checksum_algorithm = models.CharField(max_length=255, null=True)
    uploaded_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL)
    test_image = models.BooleanField(default=False)
    detections_count = models.IntegerField(null=True)
    project = models.ForeignKey(Project, null=True, on_delete=models.SET_NULL, related_name="captures")
    deployment = models.ForeignKey(Deployment, null=True, on_delete=models.SET_NULL, related_name="captures")
    event = models.ForeignKey(Event, null=True, on_delete=models.SET_NULL, related_name="captures")

    scope_paths = {"project": "project", "images": "pk"}

    class Meta:
        db_table = "main_sourceimage"
        constraints = [models.UniqueConstraint(fields=["deployment", "path"], name="unique_deployment_path")]


class Occurrence(Base):
    determination = models.ForeignKey(Taxon, null=True, on_delete=models.SET_NULL, related_name="occurrences")
    determination_score = models.FloatField(null=True)
    event = models.ForeignKey(Event, null=True, on_delete=models.SET_NULL, related_name="occurrences")
    deployment = models.ForeignKey(Deployment, null=True, on_delete=models.SET_NULL, related_name="occurrences")
    project = models.ForeignKey(Project, null=True, on_delete=models.SET_NULL, related_name="occurrences")

    scope_paths = {
        "project": "project",
        "images": "detections__source_image",
        "algorithms": ["detections__detection_algorithm", "detections__classifications__algorithm"],
        "occurrences": "pk",
    }

    class Meta:
        db_table = "main_occurrence"


class Detection(Base):
    source_image = models.ForeignKey(SourceImage, on_delete=models.CASCADE, related_name="detections")
    bbox = models.JSONField(null=True)
    timestamp = models.DateTimeField(null=True)
    path = models.CharField(max_length=255, null=True)
    occurrence = models.ForeignKey(Occurrence, null=True, on_delete=models.SET_NULL, related_name="detections")
    frame_num = models.IntegerField(null=True)
    detection_algorithm = models.ForeignKey(Algorithm, null=True, on_delete=models.SET_NULL, related_name="detections")
    detection_time = models.DateTimeField(null=True)
    detection_score = models.FloatField(null=True)
    similarity_vector = models.JSONField(null=True)

    scope_paths = {
        "project": "source_image__project",
        "images": "source_image",
        "algorithms": ["detection_algorithm", "classifications__algorithm"],
        "occurrences": "occurrence",
    }

    class Meta:
        db_table = "main_detection"


class Classification(Base):
    detection = models.ForeignKey(Detection, null=True, on_delete=models.SET_NULL, related_name="classifications")
    taxon = models.ForeignKey(Taxon, null=True, on_delete=models.SET_NULL, related_name="classifications")
    score = models.FloatField(null=True)
    timestamp = models.DateTimeField(default=timezone.now)
    terminal = models.BooleanField(default=True)
    logits = ArrayField(models.FloatField(), null=True)
    scores = ArrayField(models.FloatField(), null=True)
    category_map = models.ForeignKey(AlgorithmCategoryMap, null=True, on_delete=models.PROTECT, related_name="+")
    algorithm = models.ForeignKey(Algorithm, null=True, on_delete=models.SET_NULL, related_name="classifications")
    applied_to = models.ForeignKey("self", null=True, on_delete=models.SET_NULL, related_name="derived")

    scope_paths = {
        "project": "detection__source_image__project",
        "images": "detection__source_image",
        "algorithms": ["algorithm"],
        "occurrences": "detection__occurrence",
    }

    class Meta:
        db_table = "main_classification"


class Identification(Base):
    occurrence = models.ForeignKey(Occurrence, on_delete=models.CASCADE, related_name="identifications")
    taxon = models.ForeignKey(Taxon, null=True, on_delete=models.SET_NULL, related_name="identifications")
    user = models.ForeignKey(User, null=True, on_delete=models.SET_NULL)
    withdrawn = models.BooleanField(default=False)
    agreed_with_identification = models.ForeignKey("self", null=True, on_delete=models.SET_NULL, related_name="+")
    agreed_with_prediction = models.ForeignKey(Classification, null=True, on_delete=models.SET_NULL, related_name="+")
    comment = models.TextField(default="")

    scope_paths = {
        "project": "occurrence__project",
        "images": "occurrence__detections__source_image",
        "occurrences": "occurrence",
    }

    class Meta:
        db_table = "main_identification"


class SourceImageCollection(Base):
    name = models.CharField(max_length=255)
    description = models.TextField(default="")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="collections")
    method = models.CharField(max_length=255, default="full")
    kwargs = models.JSONField(null=True, default=dict)
    images = models.ManyToManyField(
        SourceImage, related_name="collections", db_table="main_sourceimagecollection_images"
    )

    scope_paths = {"project": "project", "images": "images"}

    class Meta:
        db_table = "main_sourceimagecollection"


# One row per capture in a collection (main_sourceimagecollection_images, Django's own M2M table): C11 counts
# these rows, so it needs them as a table of their own, reached through the collection.
CollectionImage = SourceImageCollection.images.through
CollectionImage.scope_paths = {"project": "sourceimagecollection__project", "images": "sourceimage"}


class Job(Base):
    name = models.CharField(max_length=255)
    queue = models.CharField(max_length=255, default="default")
    scheduled_at = models.DateTimeField(null=True)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    status = models.CharField(max_length=255, default="CREATED")
    progress = models.JSONField(default=dict)
    logs = models.JSONField(default=dict)
    params = models.JSONField(null=True)
    result = models.JSONField(null=True)
    task_id = models.CharField(max_length=255, null=True)
    delay = models.IntegerField(default=0)
    limit = models.IntegerField(null=True)
    shuffle = models.BooleanField(default=True)
    job_type_key = models.CharField(max_length=255, default="unknown")
    dispatch_mode = models.CharField(max_length=32, default="internal")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="jobs")
    deployment = models.ForeignKey(Deployment, null=True, on_delete=models.CASCADE, related_name="jobs")
    source_image_single = models.ForeignKey(SourceImage, null=True, on_delete=models.SET_NULL, related_name="+")
    source_image_collection = models.ForeignKey(
        SourceImageCollection, null=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    pipeline = models.ForeignKey(Pipeline, null=True, on_delete=models.SET_NULL, related_name="jobs")
    data_export_id = models.BigIntegerField(null=True, unique=True)

    scope_paths = {"project": "project", "jobs": "pk"}

    class Meta:
        db_table = "jobs_job"


class JobLog(Base):
    """A job's log line (jobs/0021); Antenna keeps them for ever unless pruned (#1277, rule JL1)."""

    level = models.CharField(max_length=20)
    message = models.TextField()
    context = models.JSONField(default=dict)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="log_entries")

    scope_paths = {"project": "job__project", "jobs": "job"}

    class Meta:
        db_table = "jobs_joblog"


class TaxaList(Base):
    """A checklist of taxa; global when it has no project, else shared by its projects."""

    name = models.CharField(max_length=255)
    description = models.TextField(default="")
    taxa = models.ManyToManyField(Taxon, related_name="lists", db_table="main_taxalist_taxa")
    projects = models.ManyToManyField(Project, related_name="taxa_lists", db_table="main_taxalist_projects")

    class Meta:
        db_table = "main_taxalist"


class Site(Base):
    """A deployment's research site (``main_deployment.research_site_id``); shared when its project is NULL."""

    name = models.CharField(max_length=80)
    description = models.TextField(default="")
    project = models.ForeignKey(Project, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        db_table = "main_site"


class Device(Base):
    """A deployment's device (``main_deployment.device_id``); shared when its project is NULL."""

    name = models.CharField(max_length=80)
    description = models.TextField(default="")
    project = models.ForeignKey(Project, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        db_table = "main_device"


class S3StorageSource(Base):
    """A deployment's data source (``main_deployment.data_source_id``).  Its keys are declared because they
    are NOT NULL; no rule, sample or report reads them."""

    name = models.CharField(max_length=255)
    bucket = models.CharField(max_length=255)
    prefix = models.CharField(max_length=255, default="")
    access_key = models.TextField(default="")
    secret_key = models.TextField(default="")
    endpoint_url = models.CharField(max_length=255, null=True)
    public_base_url = models.CharField(max_length=255, null=True)
    total_size = models.BigIntegerField(null=True)
    total_files = models.BigIntegerField(null=True)
    last_checked = models.DateTimeField(null=True)
    project = models.ForeignKey(Project, null=True, on_delete=models.SET_NULL, related_name="+")
    region = models.CharField(max_length=255, null=True)

    class Meta:
        db_table = "main_s3storagesource"


# django_celery_beat's tables (integer ids): Antenna's watchdogs are rows of PeriodicTask (jobs/0020, ml/0018).


class CrontabSchedule(models.Model):
    id = models.AutoField(primary_key=True)
    minute = models.CharField(max_length=240, default="*")
    hour = models.CharField(max_length=96, default="*")
    day_of_week = models.CharField(max_length=64, default="*")
    day_of_month = models.CharField(max_length=124, default="*")
    month_of_year = models.CharField(max_length=64, default="*")
    timezone = models.CharField(max_length=63, default="UTC")

    class Meta:
        db_table = "django_celery_beat_crontabschedule"


class IntervalSchedule(models.Model):
    id = models.AutoField(primary_key=True)
    every = models.IntegerField()
    period = models.CharField(max_length=24)  # days, hours, minutes, seconds, microseconds

    class Meta:
        db_table = "django_celery_beat_intervalschedule"


class PeriodicTask(models.Model):
    id = models.AutoField(primary_key=True)
    name = models.CharField(max_length=200, unique=True)
    task = models.CharField(max_length=200)
    args = models.TextField(default="[]")
    kwargs = models.TextField(default="{}")
    queue = models.CharField(max_length=200, null=True)
    exchange = models.CharField(max_length=200, null=True)
    routing_key = models.CharField(max_length=200, null=True)
    expires = models.DateTimeField(null=True)
    enabled = models.BooleanField(default=True)
    last_run_at = models.DateTimeField(null=True)
    total_run_count = models.IntegerField(default=0)
    date_changed = models.DateTimeField(default=timezone.now)
    description = models.TextField(default="")
    crontab = models.ForeignKey(CrontabSchedule, null=True, on_delete=models.CASCADE, related_name="+")
    interval = models.ForeignKey(IntervalSchedule, null=True, on_delete=models.CASCADE, related_name="+")
    solar_id = models.IntegerField(null=True)
    one_off = models.BooleanField(default=False)
    start_time = models.DateTimeField(null=True)
    priority = models.IntegerField(null=True)
    headers = models.TextField(default="{}")
    clocked_id = models.IntegerField(null=True)
    expire_seconds = models.IntegerField(null=True)

    scope_paths: dict[str, str | list[str]] = {}  # scope -> lookup path (or paths) from this table

    class Meta:
        db_table = "django_celery_beat_periodictask"
