"""Taxa (global): the cached parent chain and display name (K4), cycles in the parent chain (K4b), the shape
of the tree (T2, T2b), synonyms and inactive taxa in use (T3, T3b), and taxa lists' names (TL1, TL1b)."""

from django.db import connection
from django.db.models import CharField, Exists, F, Func, IntegerField, OuterRef, Q, Subquery
from django.db.models.expressions import RawSQL
from django.db.models.functions import Now

from antenna_invariants.mirror.models import TaxaList, Taxon
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


class FirstWord(Func):
    """The first whitespace-separated word of a name (Antenna's ``name.split()[0]``)."""

    template = r"(regexp_match(%(expressions)s, '\S+'))[1]"
    output_field = CharField()


class RankPosition(Func):
    """A rank's place in RANKS (KINGDOM 1 ... UNKNOWN 12); NULL for a rank Antenna does not know."""

    template = f"array_position(ARRAY[{', '.join(repr(r) for r in RANKS)}], %(expressions)s::text)"
    output_field = IntegerField()


def namesake_genera(ids):
    """The taxa named by the first word of ``ids``' names (T2 reads their rank)."""
    return Taxon.objects.filter(name__in=Taxon.objects.filter(pk__any=ids).values(first=FirstWord("name")))


@rule("T2", risk="M", depends_on=("parent", namesake_genera),
      hint="a species whose genus is missing or mis-ranked, and a parent ranked finer than its child, "
           "are a taxonomist's call: fix parent_id or the rank (then K4 recomputes the chain)")
def test_the_taxon_tree_is_well_formed(taxa):
    """The taxon tree is well formed: a SPECIES' parent is the GENUS named by its first word (Antenna's
    TaxonManager.add_genus_parents, commit 71ad6058, #1307), and a parent's rank is coarser than its child's
    (neither UNKNOWN).  A parentless species is a violation (its genus is missing) and also T2b's.  Taxa in a
    parent cycle are flagged here too when their ranks do not descend (K4b owns the cycle)."""
    genus = Taxon.objects.filter(pk=OuterRef("parent_id"), rank="GENUS", name=FirstWord(OuterRef("name")))
    not_coarser = Taxon.objects.filter(pk=OuterRef("parent_id")).exclude(rank="UNKNOWN").annotate(
        position=RankPosition("rank")).filter(position__gte=RankPosition(OuterRef("rank")))
    return taxa.filter((Q(rank="SPECIES") & ~Exists(genus)) | (~Q(rank="UNKNOWN") & Exists(not_coarser)))


@test_the_taxon_tree_is_well_formed.repair
def attach_the_species_to_its_genus(violators):
    """Antenna's own rule, and only it: a SPECIES whose parent is missing or not a GENUS gets the GENUS named by
    its first word as parent, when that genus exists (Antenna would create it; we do not create taxa).  A species
    under another genus, or without a genus of its name, and an inverted rank stay for a person (unfixable).
    parents_json is K4's to recompute."""
    genus = Taxon.objects.filter(rank="GENUS", name=FirstWord(OuterRef("name"))).exclude(pk=OuterRef("pk"))
    fixable = violators.filter(rank="SPECIES").exclude(parent__rank="GENUS").filter(Exists(genus))
    return fixable.update(parent=Subquery(genus.values("pk")[:1]), updated_at=Now())


@rule("T2b", severity="warn", hint="give the taxon its parent (import_taxa with the full lineage, or by hand)")
def test_only_the_root_taxon_has_no_parent(taxa):
    """No taxon but the root is parentless.  The root is the one Antenna's TaxonManager.root() picks: the
    parentless taxon of the coarsest rank (UNKNOWN last), then by ``ordering`` and name (Taxon's default order).
    A parentless taxon has no ancestors, so it drops out of every include-taxa filter (#1307).  Soft: taxa a
    pipeline creates from its labels (rank UNKNOWN) start without a parent."""
    root = Taxon.objects.filter(parent__isnull=True).order_by(
        RankPosition("rank").asc(nulls_last=True), F("ordering").asc(nulls_last=True), "name"
    )
    return taxa.filter(parent__isnull=True).exclude(pk=Subquery(root.values("pk")[:1]))


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


@rule("T3", severity="warn", hint="re-point the predictions and identifications at the accepted taxon (import_taxa "
                                  "sets synonym_of without doing it), or re-activate the taxon")
def test_nothing_points_at_a_synonym_or_an_inactive_taxon(taxa):
    """No occurrence's determination, classification or active (not withdrawn) identification points at a
    synonym (``synonym_of`` set) or an inactive taxon: the taxon is reported, once, with whatever points at it.
    import_taxa sets synonym_of without re-pointing predictions (#1405).  Soft: the rows are still usable."""
    from antenna_invariants.mirror.models import Classification, Identification, Occurrence

    used = (
        Exists(Occurrence.objects.filter(determination=OuterRef("pk")))
        | Exists(Classification.objects.filter(taxon=OuterRef("pk")))
        | Exists(Identification.objects.filter(taxon=OuterRef("pk"), withdrawn=False))
    )
    return taxa.filter(Q(synonym_of__isnull=False) | Q(active=False)).filter(used)


@rule("T3b", hint="point synonym_of at the accepted taxon itself (whose synonym_of is empty)")
def test_synonyms_point_at_an_accepted_taxon(taxa):
    """``synonym_of`` never chains or loops: the taxon it names is not itself a synonym (a taxon that is its own
    synonym, or two that name each other, included).  Antenna resolves one level only (#1405)."""
    return taxa.filter(synonym_of__synonym_of__isnull=False)


def namesake_lists(ids):
    """The lists that share a name with ``ids`` (TL1 compares their ages)."""
    return TaxaList.objects.filter(name__in=TaxaList.objects.filter(pk__any=ids).values("name"))


def namesake_memberships(ids):
    """The project memberships of those lists (TL1 compares their scopes)."""
    return TaxaList.projects.through.objects.filter(taxalist__in=namesake_lists(ids))


@rule("TL1", risk="L", depends_on=(namesake_lists, namesake_memberships))
def test_taxa_list_names_are_unique_in_their_scope(taxa_lists):
    """Taxa-list names are unique within their scope, as migration main/0083 left them: among the global lists
    (no project) and among the lists of one project.  Every list but the oldest (created_at, then id) of a name
    in a scope it shares is a violation.  TaxaList.objects.get_or_create_for_project races and duplicates
    crashed pipeline runs (#1108).  Global: a list may belong to several projects."""
    return taxa_lists.filter(pk__in=RawSQL(DUPLICATE_LISTS, []))


DUPLICATE_LISTS = """
SELECT l.id FROM main_taxalist l WHERE EXISTS (
    SELECT FROM main_taxalist o
     WHERE o.name = l.name AND (o.created_at, o.id) < (l.created_at, l.id)
       AND (EXISTS (SELECT FROM main_taxalist_projects p JOIN main_taxalist_projects q ON q.project_id = p.project_id
                     WHERE p.taxalist_id = l.id AND q.taxalist_id = o.id)
            OR (NOT EXISTS (SELECT FROM main_taxalist_projects p WHERE p.taxalist_id = l.id)
                AND NOT EXISTS (SELECT FROM main_taxalist_projects p WHERE p.taxalist_id = o.id))))"""


@test_taxa_list_names_are_unique_in_their_scope.repair
def rename_as_migration_0083_does(violators):
    """Rename every list but the oldest "<name> (duplicate N)", N the smallest number from 2 that no list's name
    uses yet, in created_at order, as main/0083 does.  Nothing is merged (a person's call: TL1b lists them)."""
    sql, params = violators.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH v AS (SELECT id, name, row_number() OVER (PARTITION BY name ORDER BY created_at, id) AS k,
                                  count(*) OVER (PARTITION BY name) AS n
                             FROM main_taxalist WHERE id IN ({sql})),
                     bases AS (SELECT name, max(n) AS n FROM v GROUP BY name),
                     free AS (SELECT b.name, i, row_number() OVER (PARTITION BY b.name ORDER BY i) AS k
                                FROM bases b, LATERAL generate_series(2, 1 + b.n + (
                                    SELECT count(*) FROM main_taxalist t
                                     WHERE starts_with(t.name, b.name || ' (duplicate '))) i
                               WHERE NOT EXISTS (SELECT FROM main_taxalist t
                                                  WHERE t.name = b.name || ' (duplicate ' || i || ')'))
                UPDATE main_taxalist t SET name = v.name || ' (duplicate ' || f.i || ')', updated_at = now()
                  FROM v JOIN free f ON f.name = v.name AND f.k = v.k
                 WHERE t.id = v.id""",
            params,
        )
        return cursor.rowcount


@rule("TL1b", severity="warn", hint="merge the list's taxa into the original list and delete it (or rename it)")
def test_no_taxa_list_is_a_renamed_duplicate(taxa_lists):
    """No list still carries a "(duplicate N)" suffix: migration main/0083 (and TL1's repair) renamed duplicate
    lists without merging them; merging is a person's call.  Soft: the names are unique, nothing crashes."""
    return taxa_lists.filter(name__regex=r" \(duplicate [0-9]+\)$")
