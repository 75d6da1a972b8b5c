"""Occurrences: determination (D1-D6), validity (F1, F2), structure (S5) and copied links (C3-C5)."""

from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce, Now
from django.db.models.lookups import GreaterThan, IsNull

from antenna_invariants.determination import (
    EVIDENCE,
    SCORE_IS_EXPECTED,
    TAXON_IS_EXPECTED,
    expected_scan,
    has_evidence,
    has_no_evidence,
    where_expected,
    write_expected,
)
from antenna_invariants.journal import delete_journaled, returns_images
from antenna_invariants.mirror.models import Detection
from antenna_invariants.rules import rule
from antenna_invariants.sql import IsDistinctFrom, copy_deployment_project, project_differs_from_deployment


@rule("D1", risk="M", depends_on=EVIDENCE)
def test_occurrence_with_evidence_has_a_determination(occurrences):
    """An occurrence whose real detections carry a classification with a taxon, or that has an active
    identification with a taxon, has a determination (the partial-save bug).  Such an occurrence is also
    D2's and D3's (its determination and score are not the expected ones)."""
    return occurrences.filter(has_evidence(), determination__isnull=True)


@test_occurrence_with_evidence_has_a_determination.repair
@returns_images
def determine_from_the_evidence(violators):
    """Write the expected determination and score; an occurrence whose newest active identification has
    no taxon stays unfixable (see S7)."""
    return write_expected(violators, only_where="o.determination_id IS NULL")


def has_real_detection():
    return Exists(Detection.objects.filter(occurrence=OuterRef("pk"), bbox__isnull=False))


@rule("F1", risk="H", depends_on=("detections",))
def test_occurrence_has_a_real_detection(occurrences):
    """Every occurrence has at least one real detection (bbox set): no phantom occurrences."""
    return occurrences.filter(~has_real_detection())


@test_occurrence_has_a_real_detection.repair
def delete_the_phantom(violators):
    """Delete the phantom after journaling it, its identifications and its null markers' links."""
    return delete_journaled(violators)


def real_detections():
    """The number of the occurrence's real detections (bbox set)."""
    real = Detection.objects.filter(occurrence=OuterRef("pk"), bbox__isnull=False).order_by().values("occurrence")
    return Subquery(real.annotate(n=Count("pk")).values("n"))


@rule("F2", severity="warn", hint="Antenna makes one detection per occurrence (no tracking yet): find what merged "
      "these (a manual merge, a tracking experiment) and split them if it was not meant")
def test_occurrence_has_one_real_detection(occurrences):
    """(informational) An occurrence has at most one real detection (bbox set): Antenna's pipeline creates
    exactly one detection per occurrence and there is no tracking yet (catalogue F2), so more than one means
    some other path grouped them.  Null markers do not count; an occurrence without a real one is F1's."""
    return occurrences.filter(GreaterThan(real_detections(), 1))


WRONG_TAXON = f"NOT e.blocked AND NOT {TAXON_IS_EXPECTED}"
WRONG_SCORE = f"NOT e.blocked AND NOT {SCORE_IS_EXPECTED}"
HALF_SET = "(o.determination_id IS NULL) <> (o.determination_score IS NULL)"
ZERO_LEFT_NULL = f"o.determination_score IS NULL AND NOT e.blocked AND {TAXON_IS_EXPECTED} AND e.score = 0"


@rule("D2", risk="M", depends_on=EVIDENCE)
def test_occurrence_determination_is_the_expected_taxon(occurrences):
    """An occurrence's determination is the expected taxon (NULL-safe): the newest active identification's,
    else the best machine prediction's, else NULL (stale after a withdrawal, a deletion or class masking).
    Exactly where this sentence is false, so it overlaps on purpose: a missing determination with evidence
    is also D1, a determination without evidence also D5.  Only a blocked occurrence (S7: no expected
    value) is left out."""
    return where_expected(occurrences, WRONG_TAXON)


@test_occurrence_determination_is_the_expected_taxon.repair
@returns_images
def write_the_expected_taxon(violators):
    """Write the expected determination and its score.  A determination without evidence stays (clearing
    it is D5's, a person's call): unfixable here."""
    return write_expected(violators, only_where=WRONG_TAXON)


@rule("D3", risk="M", depends_on=EVIDENCE)
def test_occurrence_score_is_the_expected_score(occurrences):
    """An occurrence's score is the expected one (NULL-safe): exactly 1.0 when a person decided, else the
    winning classification's score, NULL without evidence; where the winner scored 0.0, NULL is expected too
    (Antenna writes a score only if it is truthy, update_occurrence_determination).  Antenna rewrites the
    score only when the taxon changes, so a stale score is routine.  Checked whatever the taxon, so it
    overlaps on purpose with D1 (no determination, so no score), D2 (a wrong taxon's score), D4 and D5;
    only a blocked occurrence (S7) is left out."""
    return where_expected(occurrences, WRONG_SCORE)


@test_occurrence_score_is_the_expected_score.repair
@returns_images
def write_the_expected_score(violators):
    """Write the expected determination and score (the same pair every determination repair writes, so
    the order of D1-D4's repairs does not matter).  A score beside a determination without evidence stays
    (D5)."""
    return write_expected(violators, only_where=WRONG_SCORE)


@rule("D4", risk="L", depends_on=EVIDENCE)
def test_occurrence_determination_and_score_are_set_together(occurrences):
    """An occurrence's determination and score are both NULL or both set (a deleted taxon leaves the score
    behind), with one exception Antenna's code decides: a determination with a NULL score where the winner
    is that taxon's classification scoring 0.0, since update_occurrence_determination writes the score only
    if it is truthy.  A stored 0.0 is a score.  Runs in full under --since (the exception reads the
    evidence)."""
    only_a_score = Q(determination__isnull=True, determination_score__isnull=False)
    only_a_taxon = Q(determination__isnull=False, determination_score__isnull=True)
    return where_expected(occurrences.filter(only_a_score | only_a_taxon), f"NOT ({ZERO_LEFT_NULL})")


@test_occurrence_determination_and_score_are_set_together.repair
@returns_images
def recompute_the_pair(violators):
    """Write the expected determination and score; a stray score with no evidence behind it is cleared.  A
    determination without evidence stays (D5), and so does a blocked occurrence (S7)."""
    return write_expected(violators, only_where=HALF_SET)


# D2-D4 in a full or multi-project run: one computation of the expected determination for all three (each
# condition is its rule's, D4's narrowing to half-set pairs included: antenna_invariants.shared)
expected_scan({"D2": WRONG_TAXON, "D3": WRONG_SCORE, "D4": f"{HALF_SET} AND NOT ({ZERO_LEFT_NULL})"})


@rule("D5", hint="check the occurrence: clear its determination, or re-run classification on its detections")
def test_occurrence_determination_has_evidence(occurrences):
    """A determined occurrence has evidence for it: a classification with a taxon on a real detection, or an
    active identification with a taxon (deleted classifications and withdrawn identifications leave it).
    Also D2's (the expected taxon is NULL), and D3's when it has a score."""
    return occurrences.filter(has_no_evidence(), determination__isnull=False)


@rule("D6", hint="find the algorithm that wrote scores outside [0, 1] and reprocess its classifications")
def test_occurrence_score_is_between_0_and_1(occurrences):
    """An occurrence's determination score lies in [0, 1] (logits stored as scores break the threshold
    filter); NaN is out of range."""
    return occurrences.filter(Q(determination_score__lt=0) | Q(determination_score__gt=1))




def first_capture(field, occurrence=None):
    """``field`` of the capture of the occurrence's earliest detection: by capture timestamp, then capture
    id, then detection id (the realignment's order, #1268); NULL when it has no detection."""
    detections = Detection.objects.filter(occurrence=occurrence or OuterRef("pk"))
    earliest = detections.order_by("source_image__timestamp", "source_image", "pk")
    return Subquery(earliest.values(f"source_image__{field}")[:1])


def has_a_stray_detection():
    """The occurrence has a detection on a capture outside its deployment (NULL-safe), or, when it has no
    deployment, outside its first capture's deployment."""
    home = Coalesce(OuterRef("deployment"), first_capture("deployment", occurrence=OuterRef(OuterRef("pk"))))
    detections = Detection.objects.filter(occurrence=OuterRef("pk"))
    return Exists(detections.filter(IsDistinctFrom("source_image__deployment", home)))


@rule("S5", risk="L", depends_on=("detections__source_image__deployment",))
def test_occurrence_has_a_project_a_deployment_and_an_event(occurrences):
    """An occurrence has a project, a deployment and an event (deleting a deployment or an event nulls them;
    legacy rows predate the links)."""
    return occurrences.filter(Q(project__isnull=True) | Q(deployment__isnull=True) | Q(event__isnull=True))


@test_occurrence_has_a_project_a_deployment_and_an_event.repair
def derive_them_from_its_captures(violators):
    """Fill in what is missing from the captures of its detections when they all lie in one deployment (the
    occurrence's own, if it has one): that deployment, that deployment's project, and the event by the C5
    rule.  Occurrences without detections, or whose detections disagree, stay unfixable."""
    home, home_project = first_capture("deployment"), first_capture("deployment__project")
    first_event = first_capture("event")
    agreeing = Q(IsNull(home, False)) & ~has_a_stray_detection()
    something_to_fill = (
        Q(deployment__isnull=True)
        | Q(IsNull(home_project, False), project__isnull=True)
        | Q(IsNull(first_event, False), event__isnull=True)
    )
    return violators.filter(agreeing, something_to_fill).update(
        deployment=home,
        project=Coalesce("project", home_project),
        event=Coalesce("event", first_event),
        updated_at=Now(),
    )


@rule("C3", risk="L", depends_on=("deployment",))
def test_occurrence_project_is_its_deployment_project(occurrences):
    """An occurrence's project is its deployment's project, NULL-safe (a deployment moved to another project
    without update_children).  An occurrence without a deployment is S5's business."""
    return project_differs_from_deployment(occurrences)


test_occurrence_project_is_its_deployment_project.repair(copy_deployment_project)


@rule("C4", hint="split the occurrence by deployment, or re-home the stray captures (a person decides which)")
def test_occurrence_detections_are_all_in_its_deployment(occurrences):
    """Every detection of an occurrence is on a capture of the occurrence's deployment (NULL-safe), so all of
    them share one deployment and, through it, one project.  Without a deployment (S5), its detections must
    still agree with each other."""
    return occurrences.filter(has_a_stray_detection())


@rule("C5", risk="L", depends_on=("detections__source_image",))
def test_occurrence_event_is_the_event_of_its_first_capture(occurrences):
    """An occurrence's event is the event of the capture of its earliest detection (capture timestamp, then
    capture id, then detection id), and NULL when it has no detection (regrouping left it behind, #1268)."""
    return occurrences.filter(IsDistinctFrom("event", first_capture("event")))


@test_occurrence_event_is_the_event_of_its_first_capture.repair
def realign_the_event(violators):
    """Set the event to that of the earliest detection's capture (the regroup realignment)."""
    return violators.update(event=first_capture("event"), updated_at=Now())
