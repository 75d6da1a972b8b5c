"""Small SQL building blocks shared by the rules."""

from typing import Any

from django.db.models import (
    BooleanField,
    Exists,
    Field,
    ForeignObject,
    Func,
    Lookup,
    Model,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Now
from django.db.models.sql.compiler import SQLCompiler


class AnyOf(Lookup):
    """``field__any=ids``: ``field = ANY(%s)``, the list sent as one array.  ``__in`` sends one parameter per
    value, and a repair batch holds thousands: Django and psycopg then spend longer building and splitting
    the statement than PostgreSQL spends planning it."""

    lookup_name = "any"
    prepare_rhs = False

    def as_sql(self, compiler: SQLCompiler, connection: Any) -> tuple[str, list[Any]]:
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s)", [*params, list(self.rhs)]


Field.register_lookup(AnyOf)
ForeignObject.register_lookup(AnyOf)  # a foreign key's lookups are its own


class IsDistinctFrom(Func):
    """``a IS DISTINCT FROM b``: NULL-safe inequality (NULL vs a value differs, NULL vs NULL does not)."""

    arg_joiner = " IS DISTINCT FROM "
    template = "(%(expressions)s)"
    output_field = BooleanField()


class NotEqual(Func):
    """``a <> b``: NULL (so never a violation) when either side is NULL."""

    arg_joiner = " <> "
    template = "(%(expressions)s)"
    output_field = BooleanField()


class IsNotDistinctFrom(Func):
    """``a IS NOT DISTINCT FROM b``: NULL-safe equality (NULL equals NULL, as in GROUP BY / PARTITION BY)."""

    arg_joiner = " IS NOT DISTINCT FROM "
    template = "(%(expressions)s)"
    output_field = BooleanField()


def has_an_older_twin(model: type[Model], keys: list[str], where: Q | None = None) -> Exists:
    """True for a row of ``model`` when another row matching ``where`` shares its ``keys`` (NULL-safe: NULLs
    group together) and is older (created_at, then id).  Filtering rows that match ``where`` by it leaves
    every row of a group but the oldest, and the oldest never depends on the scope; the first key must be
    NOT NULL, so an index on it serves each probe and the work grows with the scope, not the table."""
    twins = model.objects.filter(where or Q(), **{keys[0]: OuterRef(keys[0])})
    for key in keys[1:]:
        twins = twins.filter(IsNotDistinctFrom(key, OuterRef(key)))
    older = Q(created_at__lt=OuterRef("created_at")) | Q(created_at=OuterRef("created_at"), pk__lt=OuterRef("pk"))
    return Exists(twins.filter(older))


def project_differs_from_deployment(rows: QuerySet) -> QuerySet:
    """Rows (captures, events, occurrences) with a deployment whose project differs from it, NULL-safe."""
    return rows.filter(deployment__isnull=False).filter(IsDistinctFrom("project", "deployment__project"))


def copy_deployment_project(violators: QuerySet) -> int:
    """Copy the deployment's project onto the rows, as Deployment.update_children does.  A project is never
    cleared: rows of a deployment without a project stay unfixable (see S6b)."""
    from antenna_invariants.mirror.models import Deployment

    project = Deployment.objects.filter(pk=OuterRef("deployment_id")).values("project_id")
    return violators.filter(deployment__project__isnull=False).update(project=Subquery(project), updated_at=Now())
