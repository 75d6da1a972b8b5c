"""K4 (parents_json and display_name follow the parent chain and the rank) and K4b (no parent cycles).
Taxa are global: one case, every taxon."""

from antenna_invariants.mirror.models import Taxon
from antenna_invariants.rules import RULES
from fixtures import factories as f
from fixtures.scenarios import taxa as scenarios


def chain(*taxa):
    return [{"id": t.pk, "name": t.name, "rank": t.rank} for t in taxa]


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


def test_k4_near_misses_follow_antennas_display_rule(invariants):
    order, family, genus, species = scenarios.lineage()
    plain = f.TaxonFactory()  # what the other factories create: a root species
    assert genus.display_name == f"{genus.name} sp." and family.display_name == family.name
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


def test_k4_is_global(invariants):
    genus, species = scenarios.reparented_genus()
    project = f.ProjectFactory()
    assert RULES["K4"].is_global and RULES["K4b"].is_global
    assert invariants.violators("K4", project=project) == invariants.violators("K4") == {genus.pk, species.pk}


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
