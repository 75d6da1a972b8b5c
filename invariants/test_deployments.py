"""Deployments and what they link: the site, device and storage source of their project (X1), and the
captures synced from their storage source (X2)."""

from django.db.models import BooleanField, Exists, OuterRef
from django.db.models.expressions import RawSQL

from antenna_invariants.mirror.models import Device, S3StorageSource, Site
from antenna_invariants.rules import rule
from antenna_invariants.sql import IsDistinctFrom

LINKS = {"research_site_id": Site, "device_id": Device, "data_source_id": S3StorageSource}


@rule("X1", hint="link the deployment to its own project's site, device and storage source, or share the row "
                 "(set its project to NULL)")
def test_deployment_links_stay_in_its_project(deployments):
    """A deployment's research site, device and storage source belong to its project or are shared (their
    project is NULL).  DeploymentSerializer accepts any project's rows, and a moved deployment keeps the old
    project's (its captures then sync from another project's bucket)."""
    foreign = [
        Exists(
            model.objects.filter(pk=OuterRef(column), project__isnull=False)
            .filter(IsDistinctFrom("project", OuterRef("project")))
        )
        for column, model in LINKS.items()
    ]
    return deployments.filter(foreign[0] | foreign[1] | foreign[2])


# A regex that reads the same in Python's re (Antenna's sync filter) and in PostgreSQL: literal characters,
# escaped classes, "." with an optional "*" or "+", anchors.  Other regexes are not checked.
SIMPLE_REGEX = r"^\^?([A-Za-z0-9_ /-]|\\[.dDwWsS]|\.[*+]?)*\$?$"
OUTSIDE_THE_SOURCE = r"""EXISTS (
    SELECT FROM main_deployment d JOIN main_s3storagesource src ON src.id = d.data_source_id,
           LATERAL (SELECT concat_ws('/', nullif(btrim(src.prefix, '/'), ''),
                                          nullif(btrim(d.data_source_subdir, '/'), '')) AS dir) p
     WHERE d.id = "main_sourceimage"."deployment_id"
       AND ((p.dir <> '' AND NOT starts_with("main_sourceimage"."path", p.dir || '/'))
            OR (d.data_source_regex ~ %s AND "main_sourceimage"."path" !~ d.data_source_regex)))"""


@rule("X2", hint="move the captures with Deployment.update_subdir_of_captures (run by hand), or fix the "
                 "deployment's data_source_subdir / data_source_regex and sync again")
def test_synced_capture_lies_in_its_deployment_source(captures):
    """A synced capture (not uploaded: no uploaded_by, not a test image) of a deployment with a storage source
    has a path (the object's key) under the source's prefix and the deployment's data_source_subdir, and
    matching its data_source_regex when that regex is simple (SIMPLE_REGEX: one that means the same to Python
    and PostgreSQL).  Changing the subdir does not move the captures: update_subdir_of_captures "is not run
    automatically" (#456)."""
    outside = RawSQL(OUTSIDE_THE_SOURCE, [SIMPLE_REGEX], output_field=BooleanField())
    synced = captures.filter(test_image=False, uploaded_by__isnull=True, deployment__data_source_id__isnull=False)
    return synced.filter(outside)
