"""Small SQL building blocks shared by the rules."""

from django.db.models import BooleanField, Func, OuterRef, Subquery
from django.db.models.expressions import RawSQL
from django.db.models.functions import Now


class IsDistinctFrom(Func):
    """``a IS DISTINCT FROM b``: NULL-safe inequality (NULL vs a value differs, NULL vs NULL does not)."""

    arg_joiner = " IS DISTINCT FROM "
    template = "(%(expressions)s)"
    output_field = BooleanField()


def all_but_the_oldest(table: str, group_by: str, where: str) -> RawSQL:
    """Ids of every row of ``table`` matching ``where`` except the oldest (created_at, then id) of its
    ``group_by`` group.  Ranked over the whole table, so "oldest" never depends on the scope or the batch."""
    return RawSQL(
        f'SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY {group_by} ORDER BY created_at, id) AS n '
        f'FROM "{table}" WHERE {where}) ranked WHERE n > 1',
        [],
    )


def project_differs_from_deployment(rows):
    """Rows (captures, events, occurrences) with a deployment whose project differs from it, NULL-safe."""
    return rows.filter(deployment__isnull=False).filter(IsDistinctFrom("project", "deployment__project"))


def copy_deployment_project(violators):
    """Copy the deployment's project onto the rows, as Deployment.update_children does.  A project is never
    cleared: rows of a deployment without a project stay unfixable (see S6b)."""
    from antenna_invariants.mirror.models import Deployment

    project = Deployment.objects.filter(pk=OuterRef("deployment_id")).values("project_id")
    return violators.filter(deployment__project__isnull=False).update(project=Subquery(project), updated_at=Now())
