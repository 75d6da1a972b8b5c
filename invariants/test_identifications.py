"""Identifications: a taxon when active (S7), agreements inside the occurrence (C10), one active
identification per person (D7)."""

from django.db.models import Exists, OuterRef, Q

from antenna_invariants.determination import EVIDENCE, rewrite_expected
from antenna_invariants.mirror.models import Classification, Identification
from antenna_invariants.rules import rule


@rule("S7", hint="give the identification a taxon or withdraw it (a person's call); until then it blocks")
def test_active_identification_has_a_taxon(identifications):
    """An active identification has a taxon (deleting a taxon nulls it); while it is the newest one, its
    occurrence's determination cannot be recomputed."""
    return identifications.filter(withdrawn=False, taxon__isnull=True)


@rule("C10", hint="re-point the agreement at a row of this occurrence, or clear it (loses provenance)")
def test_identification_agrees_with_rows_of_its_own_occurrence(identifications):
    """An identification's agreed_with_identification belongs to the same occurrence, and so does its
    agreed_with_prediction (through the prediction's detection; an orphaned prediction belongs to none)."""
    other_identification = Identification.objects.filter(pk=OuterRef("agreed_with_identification")).exclude(
        occurrence=OuterRef("occurrence")
    )
    other_prediction = Classification.objects.filter(pk=OuterRef("agreed_with_prediction")).exclude(
        detection__occurrence=OuterRef("occurrence")
    )
    return identifications.filter(Exists(other_identification) | Exists(other_prediction))


def newer_by_the_same_person():
    """An active identification of the same occurrence by the same user, newer by (created_at, id)."""
    same = Identification.objects.filter(occurrence=OuterRef("occurrence"), user=OuterRef("user"), withdrawn=False)
    newer = Q(created_at__gt=OuterRef("created_at")) | Q(created_at=OuterRef("created_at"), pk__gt=OuterRef("pk"))
    return Exists(same.filter(newer))


@rule("D7", risk="M", depends_on=("occurrence__identifications", *(f"occurrence__{path}" for path in EVIDENCE)))
def test_person_has_one_active_identification_per_occurrence(identifications):
    """A person has at most one active identification per occurrence (creating one withdraws their others;
    paths that skip that leave several).  The violators are all but the newest; NULL users are not compared."""
    return identifications.filter(newer_by_the_same_person(), withdrawn=False, user__isnull=False)


@test_person_has_one_active_identification_per_occurrence.repair
def withdraw_all_but_the_newest(violators):
    """Withdraw them, then write the expected determination of their occurrences (journaled first).  Returns
    the number of identifications withdrawn."""
    affected = list(violators.values_list("occurrence", flat=True).distinct())
    withdrawn = violators.update(withdrawn=True)
    rewrite_expected(affected)
    return withdrawn
