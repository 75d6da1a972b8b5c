"""K4 (parents_json and display_name follow the parent chain and the rank), K4b (no parent cycles), T2 and T2b
(the tree's shape), T3 and T3b (synonyms and inactive taxa), TL1 and TL1b (taxa-list names).  Taxa and taxa
lists are global: one case, every row."""

from datetime import timedelta

import pytest
from plugins.contract import for_each_rule

from antenna_invariants.mirror.models import Taxon
from antenna_invariants.rules import RULES
from antenna_invariants.scope import NO_PROJECT
from fixtures import factories as f
from fixtures.scenarios import taxa as scenarios


def chain(*taxa):
    return [{"id": t.pk, "name": t.name, "rank": t.rank} for t in taxa]


@pytest.mark.covers("K4", "planted", "near_miss")
def test_k4_flags_stale_parents_and_wrong_display_names(invariants):
    genus, species = scenarios.reparented_genus()
    shown_as_species = scenarios.genus_shown_as_species()
    nameless = scenarios.taxon_without_display_name()
    taken, _ = scenarios.display_name_taken()
    healthy = scenarios.lineage()
    in_cycle = scenarios.parent_cycle()

    violators = invariants.violators("K4")
    assert violators == {genus.pk, species.pk, shown_as_species.pk, nameless.pk, taken.pk}
    assert not {t.pk for t in (*healthy, *in_cycle)} & violators


@pytest.mark.covers("K4", "near_miss")
def test_k4_near_misses_follow_antennas_display_rule(invariants):
    order, family, genus, species = scenarios.lineage()
    plain = f.TaxonFactory()  # what the other factories create: a root species
    assert genus.display_name == f"{genus.name} sp."
    assert family.display_name == family.name
    assert species.parents_json == chain(order, family, genus)
    assert invariants.violators("K4") == set()
    assert plain.parents_json == []


def test_k4_caches_an_out_of_order_chain_in_rank_order_as_antenna_does(invariants):
    family = scenarios.CachedTaxonFactory(rank="FAMILY")
    genus = scenarios.CachedTaxonFactory(rank="GENUS", parent=family)
    tribe = scenarios.CachedTaxonFactory(rank="TRIBE", parent=genus)  # a tribe under a genus: ranks inverted
    species = scenarios.CachedTaxonFactory(rank="SPECIES", parent=tribe)
    assert species.parents_json == chain(family, genus, tribe)  # walking order, root first

    assert invariants.violators("K4") == {species.pk}
    invariants.repair("K4")
    species.refresh_from_db()
    assert species.parents_json == chain(family, tribe, genus)  # Taxon.update_parents sorts by rank


@pytest.mark.covers("K4", "scope")
def test_k4_is_global(invariants):
    genus, species = scenarios.reparented_genus()
    project = f.ProjectFactory()
    assert RULES["K4"].is_global
    assert RULES["K4b"].is_global
    assert invariants.violators("K4", project=project) == invariants.violators("K4") == {genus.pk, species.pk}


@pytest.mark.covers("K4", "repair")
def test_k4_repair_recomputes_the_chain_and_the_display_name(invariants):
    genus, species = scenarios.reparented_genus()
    shown_as_species = scenarios.genus_shown_as_species()
    nameless = scenarios.taxon_without_display_name()
    order, family, healthy_genus, healthy_species = scenarios.lineage()
    healthy = [order.pk, family.pk, healthy_genus.pk, healthy_species.pk]
    before = {t["id"]: t for t in Taxon.objects.filter(pk__in=healthy).values()}

    outcome = invariants.repair("K4")

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("repaired", 4, 0)
    genus.refresh_from_db()
    new_family = genus.parent
    assert genus.parents_json == chain(new_family.parent, new_family)
    species.refresh_from_db()
    assert species.parents_json == chain(new_family.parent, new_family, genus)
    shown_as_species.refresh_from_db()
    assert shown_as_species.display_name == f"{shown_as_species.name} sp."
    nameless.refresh_from_db()
    assert nameless.display_name == nameless.name
    assert {t["id"]: t for t in Taxon.objects.filter(pk__in=before).values()} == before
    assert invariants.repair("K4").fixed == 0  # idempotent


def test_k4_repair_fixes_the_chain_but_never_takes_a_display_name_in_use(invariants):
    taken, holder = scenarios.display_name_taken()
    shown_as_species = scenarios.genus_shown_as_species()

    outcome = invariants.repair("K4")

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("failed", 2, 1)
    taken.refresh_from_db()
    assert taken.parents_json == chain(taken.parent)
    assert taken.display_name == taken.name
    holder.refresh_from_db()
    assert holder.display_name == f"{taken.name} sp."
    shown_as_species.refresh_from_db()
    assert shown_as_species.display_name == f"{shown_as_species.name} sp."
    assert invariants.violators("K4") == {taken.pk}
    assert invariants.repair("K4").fixed == 0


def test_k4_repair_survives_two_violators_wanting_the_same_display_name(invariants):
    genus = scenarios.genus_shown_as_species()
    rival = scenarios.taxon_without_display_name()
    Taxon.objects.filter(pk=rival.pk).update(name=f"{genus.name} sp.", rank="UNKNOWN")
    other = scenarios.taxon_without_display_name()

    outcome = invariants.repair("K4")  # one statement fails on the UNIQUE display_name, then is bisected

    assert (outcome.fixed, outcome.unfixable) == (2, 1)
    other.refresh_from_db()
    assert other.display_name == other.name
    assert len(invariants.violators("K4") & {genus.pk, rival.pk}) == 1


def test_k4_never_repairs_a_taxon_in_or_below_a_cycle(invariants):
    in_cycle = scenarios.parent_cycle()
    before = {t["id"]: t for t in Taxon.objects.filter(pk__in=[t.pk for t in in_cycle]).values()}

    assert invariants.repair("K4").fixed == 0
    assert {t["id"]: t for t in Taxon.objects.filter(pk__in=before).values()} == before


def test_k4_check_mode_writes_nothing(invariants):
    scenarios.reparented_genus()
    before = invariants.snapshot()
    assert invariants.check("K4").violations == 2
    assert invariants.snapshot() == before


@pytest.mark.covers("K4b", "planted", "near_miss")
def test_k4b_flags_cycles_and_the_taxa_below_them(invariants):
    a, b, below = scenarios.parent_cycle()
    itself = scenarios.own_parent()
    healthy = scenarios.lineage()
    genus, species = scenarios.reparented_genus()  # stale, but acyclic

    assert invariants.violators("K4b") == {a.pk, b.pk, below.pk, itself.pk}
    assert not {t.pk for t in (*healthy, genus, species)} & invariants.violators("K4b")


def test_k4b_is_report_only_and_check_writes_nothing(invariants):
    scenarios.parent_cycle()
    before = invariants.snapshot()
    assert invariants.check("K4b").violations == 3
    assert invariants.snapshot() == before
    assert RULES["K4b"].repair_func is None


# --- T2 / T2b: the shape of the tree ----------------------------------------------------------------------


def plant_t2():
    """Every T2 defect: ({repairable species: its genus}, [the ones only a person can fix])."""
    parentless, genus = scenarios.species_without_a_parent()
    under_tribe, tribe_genus = scenarios.species_under_a_tribe()
    left = [scenarios.species_under_another_genus(), scenarios.species_whose_genus_is_missing(),
            scenarios.family_under_a_genus()]
    return {parentless: genus, under_tribe: tribe_genus}, left


@pytest.mark.covers("T2", "planted", "near_miss")
def test_t2_flags_species_off_their_genus_and_inverted_ranks(invariants):
    fixable, left = plant_t2()
    near_misses = [*scenarios.lineage(), *scenarios.genus_and_species(), scenarios.unranked_below_a_species()]

    assert invariants.violators("T2") == {t.pk for t in [*fixable, *left]}
    assert not {t.pk for t in near_misses} & invariants.violators("T2")


@pytest.mark.covers("T2", "repair")
def test_t2_repair_attaches_species_to_their_genus_as_antenna_does_and_nothing_else(invariants):
    fixable, left = plant_t2()
    before = {t["id"]: t for t in Taxon.objects.filter(pk__in=[t.pk for t in left]).values()}

    outcome = invariants.repair("T2")

    assert (outcome.status, outcome.fixed, outcome.unfixable) == ("failed", 2, 3)
    assert {t.pk: Taxon.objects.get(pk=t.pk).parent_id for t in fixable} == {t.pk: g.pk for t, g in fixable.items()}
    assert {t["id"]: t for t in Taxon.objects.filter(pk__in=before).values()} == before
    assert invariants.violators("T2") == {t.pk for t in left}
    assert invariants.repair("T2").fixed == 0  # idempotent
    assert outcome.journaled == {"update main_taxon": 2}


@pytest.mark.covers("T2", "scope")
def test_t2_check_writes_nothing_and_is_global(invariants):
    scenarios.species_under_a_tribe()
    project = f.ProjectFactory()
    assert RULES["T2"].is_global
    assert RULES["T2b"].is_global
    before = invariants.snapshot()
    assert invariants.check("T2", project=project).violations == invariants.check("T2").violations == 1
    assert invariants.snapshot() == before


@pytest.mark.covers("T2b", "planted", "near_miss")
def test_t2b_flags_every_parentless_taxon_but_antennas_root(invariants):
    root, other_kingdom = scenarios.second_kingdom()
    label = scenarios.parentless_label()
    order, family, genus, species = scenarios.lineage()  # a parentless order: coarser ranks exist, so not the root

    assert invariants.violators("T2b") == {other_kingdom.pk, label.pk, order.pk}
    outcome = invariants.check("T2b")
    assert outcome.status == "warned"
    assert RULES["T2b"].repair_func is None


@pytest.mark.covers("T2b", "planted", "near_miss")
def test_t2b_root_is_the_coarsest_rank_then_ordering_then_name(invariants):
    a = scenarios.CachedTaxonFactory(rank="ORDER", name="Zygoptera")
    b = scenarios.CachedTaxonFactory(rank="ORDER", name="Anisoptera")
    label = scenarios.parentless_label()
    assert invariants.violators("T2b") == {a.pk, label.pk}  # by name
    Taxon.objects.filter(pk=a.pk).update(ordering=1)
    assert invariants.violators("T2b") == {b.pk, label.pk}  # by ordering first (NULL last)


# --- T3 / T3b: synonyms and inactive taxa -----------------------------------------------------------------


@pytest.mark.covers("T3", "planted", "near_miss")
def test_t3_flags_synonyms_and_inactive_taxa_in_use(invariants):
    station = f.DeploymentFactory()
    determined = scenarios.synonym_determined(station)
    identified = scenarios.inactive_taxon_identified(station)
    near_misses = scenarios.unused_synonyms(station)

    assert invariants.violators("T3") == {determined.pk, identified.pk}
    assert not {t.pk for t in near_misses} & invariants.violators("T3")
    assert invariants.check("T3").status == "warned"


@pytest.mark.covers("T3", "planted")
def test_t3_counts_a_classification_alone(invariants):
    from antenna_invariants.mirror.models import Occurrence

    station = f.DeploymentFactory()
    old = scenarios.synonym_determined(station)
    Occurrence.objects.filter(determination=old).update(determination=f.TaxonFactory())  # the determination moved on
    assert invariants.violators("T3") == {old.pk}  # its classifications still name the synonym


@pytest.mark.covers("T3b", "planted", "near_miss")
def test_t3b_flags_chains_and_loops(invariants):
    chained = scenarios.synonym_chain()
    loop = scenarios.synonym_loop()
    plain, accepted = scenarios.synonym()

    assert invariants.violators("T3b") == {chained.pk, *(t.pk for t in loop)}
    assert not {plain.pk, accepted.pk} & invariants.violators("T3b")


def test_t3_rules_are_report_only_and_check_writes_nothing(invariants):
    scenarios.synonym_chain()
    scenarios.synonym_determined(f.DeploymentFactory())
    before = invariants.snapshot()
    assert invariants.check("T3").violations == 1
    assert invariants.check("T3b").violations == 1
    assert invariants.snapshot() == before
    assert RULES["T3"].repair_func is None
    assert RULES["T3b"].repair_func is None


# --- TL1 / TL1b: taxa-list names ---------------------------------------------------------------------------


@pytest.mark.covers("TL1", "planted", "near_miss")
def test_tl1_flags_the_newer_duplicates_in_each_scope(invariants):
    project, other = f.ProjectFactory(), f.ProjectFactory()
    _, newer_global = scenarios.duplicate_global_lists()
    _, newer_project = scenarios.duplicate_project_lists(project, other)
    near_misses = scenarios.lists_unique_in_their_scopes(project, other)
    shared_elsewhere = scenarios.taxa_list("Moths of Canada", other)  # a project list: not in the global scope

    assert invariants.violators("TL1") == {newer_global.pk, newer_project.pk}
    assert not {row.pk for row in [*near_misses, shared_elsewhere]} & invariants.violators("TL1")


@pytest.mark.covers("TL1", "planted", "near_miss")
def test_tl1_flags_a_list_newer_than_one_of_its_projects_namesakes(invariants):
    project, other = f.ProjectFactory(), f.ProjectFactory()
    oldest_in_other = scenarios.taxa_list("Checklist", other, age=timedelta(days=3))
    shared = scenarios.taxa_list("Checklist", project, other, age=timedelta(days=2))
    newest_in_project = scenarios.taxa_list("Checklist", project)
    assert invariants.violators("TL1") == {shared.pk, newest_in_project.pk}
    assert oldest_in_other.pk not in invariants.violators("TL1")


@pytest.mark.covers("TL1", "repair")
@pytest.mark.covers("TL1b", "planted")
def test_tl1_repair_renames_as_migration_0083_does(invariants):
    from antenna_invariants.mirror.models import TaxaList

    original, newer = scenarios.duplicate_global_lists()
    newest = scenarios.taxa_list("Moths of Canada", age=timedelta(days=-1))
    taken = scenarios.renamed_duplicate()  # "Moths of Canada (duplicate 2)" exists already
    project = f.ProjectFactory()
    own = scenarios.taxa_list("Moths of Canada", project)  # another scope: keeps its name

    outcome = invariants.repair("TL1")

    assert (outcome.status, outcome.fixed) == ("repaired", 2)
    names = dict(TaxaList.objects.values_list("pk", "name"))
    assert names[original.pk] == names[own.pk] == "Moths of Canada"
    assert (names[newer.pk], names[newest.pk]) == ("Moths of Canada (duplicate 3)", "Moths of Canada (duplicate 4)")
    assert names[taken.pk] == "Moths of Canada (duplicate 2)"
    assert invariants.violators("TL1b") == {taken.pk, newer.pk, newest.pk}  # merging is a person's call
    assert invariants.repair("TL1").fixed == 0  # idempotent


def test_tl1_check_writes_nothing_and_tl1b_is_soft(invariants):
    scenarios.duplicate_global_lists()
    scenarios.renamed_duplicate()
    before = invariants.snapshot()
    assert invariants.check("TL1").violations == 1
    outcome = invariants.check("TL1b")
    assert (outcome.status, outcome.violations) == ("warned", 1)
    assert invariants.snapshot() == before
    assert RULES["TL1"].is_global
    assert RULES["TL1b"].repair_func is None


@pytest.mark.covers("TL1b", "planted", "near_miss")
def test_tl1b_warns_about_lists_named_as_renamed_duplicates_only(invariants):
    project = f.ProjectFactory()
    renamed = [scenarios.renamed_duplicate(), scenarios.taxa_list("Vermont checklist (duplicate 12)", project)]
    near_misses = [*scenarios.lists_almost_named_as_duplicates(), *scenarios.duplicate_global_lists()]

    assert invariants.violators("TL1b") == {row.pk for row in renamed}
    assert not {row.pk for row in near_misses} & invariants.violators("TL1b")
    assert invariants.check("TL1b").status == "warned"


# --- every global rule: one case, the same rows whatever the scope ----------------------------------------

GLOBAL = {  # rule -> plants its defect beside a deployment (in its project, where rows belong to one)
    "K4": lambda station: scenarios.reparented_genus(),
    "K4b": lambda station: scenarios.parent_cycle(),
    "T2": lambda station: scenarios.species_under_a_tribe()[0],
    "T2b": lambda station: scenarios.CachedTaxonFactory(rank="UNKNOWN"),
    "T3": scenarios.synonym_determined,
    "T3b": lambda station: scenarios.synonym_chain(),
    "TL1": lambda station: scenarios.duplicate_project_lists(station.project, f.ProjectFactory())[1],
    "TL1b": lambda station: scenarios.taxa_list(f"{station.project.name} (duplicate 2)", station.project),
}


@for_each_rule(GLOBAL, "scope")
def test_a_global_rule_reports_the_same_rows_whatever_the_project_scope(invariants, rule_id, plant):
    scenarios.CachedTaxonFactory(rank="KINGDOM")  # the tree's root, as Antenna's has one (T2b spares it)
    mine, other = f.DeploymentFactory(), f.DeploymentFactory()
    planted = set()
    for station in (mine, other):
        rows = plant(station)
        planted |= {row.pk for row in (rows if isinstance(rows, (list, tuple)) else [rows])}

    assert RULES[rule_id].is_global
    for project in (None, mine.project_id, other.project_id, NO_PROJECT):
        assert invariants.violators(rule_id, project=project) == planted, project
