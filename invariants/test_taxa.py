"""Taxa (global): the cached parent chain and display name (K4), and cycles in the parent chain (K4b)."""

from django.db import connection
from django.db.models.expressions import RawSQL

from antenna_invariants.mirror.models import Taxon
from antenna_invariants.rules import rule

RANKS = ["KINGDOM", "PHYLUM", "CLASS", "ORDER", "SUPERFAMILY", "FAMILY", "SUBFAMILY", "TRIBE", "SUBTRIBE", "GENUS",
         "SPECIES", "UNKNOWN"]  # Antenna's TaxonRank order (fact sheet §1.10)

# The expected cached values of the target taxa, in one statement.  ``walk`` climbs parent_id from each
# target, one row per ancestor, and stops when it meets a taxon it has already seen: a taxon with such a
# row has a cyclic chain (it is in a cycle or below one) and has no expected parents_json.  Ancestors are
# ordered as Taxon.update_parents leaves them: by rank, ties in walking order (nearest first).
EXPECTED_SQL = """
WITH RECURSIVE walk(taxon_id, ancestor_id, depth, seen) AS (
    SELECT t.id, t.parent_id, 1, ARRAY[t.id]
      FROM main_taxon t
     WHERE t.parent_id IS NOT NULL AND t.id IN ({target})
    UNION ALL
    SELECT w.taxon_id, a.parent_id, w.depth + 1, w.seen || a.id
      FROM walk w JOIN main_taxon a ON a.id = w.ancestor_id
     WHERE a.parent_id IS NOT NULL AND a.id <> ALL (w.seen)
),
chains AS (
    SELECT w.taxon_id,
           bool_or(w.ancestor_id = ANY (w.seen)) AS cyclic,
           jsonb_agg(jsonb_build_object('id', a.id, 'name', a.name, 'rank', a."rank")
                     ORDER BY array_position(ARRAY[{ranks}], a."rank"::text), w.depth)
               AS parents_json
      FROM walk w JOIN main_taxon a ON a.id = w.ancestor_id
     GROUP BY w.taxon_id
),
expected AS (
    SELECT t.id,
           COALESCE(c.cyclic, false) AS cyclic,
           COALESCE(c.parents_json, '[]'::jsonb) AS parents_json,
           CASE WHEN t."rank" = 'GENUS' THEN t.name || ' sp.' ELSE t.name END AS display_name
      FROM main_taxon t LEFT JOIN chains c ON c.taxon_id = t.id
     WHERE t.id IN ({target})
)
"""


ANCESTORS_SQL = """
WITH RECURSIVE up(id, seen) AS (
    SELECT t.parent_id, ARRAY[t.id] FROM main_taxon t WHERE t.id = ANY(%s) AND t.parent_id IS NOT NULL
    UNION ALL
    SELECT a.parent_id, up.seen || a.id
      FROM up JOIN main_taxon a ON a.id = up.id
     WHERE a.parent_id IS NOT NULL AND a.id <> ALL (up.seen)
)
SELECT id FROM up"""


def ancestors(ids):
    """The taxa above ``ids`` (their names, ranks and parents are what K4's expected chain is made of)."""
    return Taxon.objects.filter(pk__in=RawSQL(ANCESTORS_SQL, [ids]))


def expected(taxa) -> tuple[str, list]:
    target, params = taxa.order_by().values("pk").query.sql_with_params()
    ranks = ", ".join(f"'{rank}'" for rank in RANKS)
    return EXPECTED_SQL.format(target=target, ranks=ranks), list(params) * 2


def where_expected(taxa, condition: str):
    """The taxa for which ``condition`` holds, an SQL test on ``t`` (the taxon) and ``e`` (its expected row)."""
    sql, params = expected(taxa)
    matching = f"{sql} SELECT t.id FROM expected e JOIN main_taxon t ON t.id = e.id WHERE {condition}"
    return taxa.filter(pk__in=RawSQL(matching, params))


@rule("K4", risk="L", depends_on=(ancestors,))
def test_taxon_caches_follow_its_parent_chain(taxa):
    """A taxon's parents_json is its ancestor chain from parent_id, each {id, name, rank}, root first (sorted
    by rank, as Antenna sorts it: the same order for a well-ranked chain), and its display_name is its name
    ("<name> sp." for a genus).  Taxa whose chain loops are K4b's, never this rule's: they have no chain to
    cache.  Bulk writes to parent_id leave parents_json stale (research §16)."""
    return where_expected(
        taxa, "NOT e.cyclic AND (t.parents_json, t.display_name) IS DISTINCT FROM (e.parents_json, e.display_name)"
    )


@test_taxon_caches_follow_its_parent_chain.repair
def recompute_parents_and_display_name(violators):
    """Recompute parents_json and display_name in one UPDATE.  display_name is UNIQUE: when another taxon
    already holds the expected name it is left as it is (parents_json is still fixed) and the taxon stays
    unfixable, for a person to rename one of the two."""
    sql, params = expected(violators)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""{sql},
            planned AS (
                SELECT e.id, e.parents_json,
                       CASE WHEN EXISTS (SELECT 1 FROM main_taxon o
                                          WHERE o.display_name = e.display_name AND o.id <> e.id)
                            THEN t.display_name ELSE e.display_name END AS display_name
                  FROM expected e JOIN main_taxon t ON t.id = e.id
                 WHERE NOT e.cyclic
            )
            UPDATE main_taxon t
               SET parents_json = p.parents_json, display_name = p.display_name, updated_at = now()
              FROM planned p
             WHERE t.id = p.id AND (t.parents_json, t.display_name) IS DISTINCT FROM (p.parents_json, p.display_name)
            """,
            params,
        )
        return cursor.rowcount


@rule("K4b", hint="break the cycle: set the right parent_id by hand; K4 then recomputes the chain")
def test_taxon_parent_chain_has_no_cycle(taxa):
    """No taxon's parent chain loops (second half of catalogue K4): a taxon in a cycle, or below one, makes
    Antenna's Taxon.update_parents loop for ever.  Report only: which link is wrong is a taxonomic decision."""
    return where_expected(taxa, "e.cyclic")
