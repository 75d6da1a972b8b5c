"""Classifications: references, copied category maps, duplicates, scores and the terminal flag."""

from django.db.models import CharField, Exists, FloatField, Func, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Lower

from antenna_invariants.mirror.models import Algorithm, Classification
from antenna_invariants.rules import rule
from antenna_invariants.sql import IsDistinctFrom, NotEqual, has_an_older_twin

BINARY_MOTH_LABELS = ("moth", "non-moth", "nonmoth")  # the names migration ml/0015 demoted


class ArrayMax(Func):
    """The largest element of an array (NULL for NULL or empty)."""

    template = "(SELECT max(element) FROM unnest(%(expressions)s) element)"
    output_field = FloatField()


class Cardinality(Func):
    function = "cardinality"
    output_field = IntegerField()


class TopLabel(Func):
    """``labels[array_position(scores, max(scores))]``: the label at the first maximum of the scores
    (PostgreSQL arrays are 1-based, like array_position); NULL when there is no such label."""

    output_field = CharField()

    def as_sql(self, compiler, connection):
        (labels, scores), params = zip(*(compiler.compile(e) for e in self.source_expressions), strict=True)
        top, top_params = compiler.compile(ArrayMax(self.source_expressions[1]))
        return f"({labels})[array_position({scores}, {top})]", [*params[0], *params[1], *top_params]


@rule("S1", hint="the detection was deleted through the ORM; delete them once no identification agrees with them")
def test_classification_has_a_detection(classifications):
    """A classification belongs to a detection.  Deleting a detection through the ORM leaves its
    classifications orphaned; with no detection they have no project, so they show up in the "noproject"
    case only."""
    return classifications.filter(detection__isnull=True)


@rule("S2", hint="the taxon or algorithm was deleted; the taxon can be re-derived from the category map (see G3)")
def test_classification_has_a_taxon_and_an_algorithm(classifications):
    """A classification names its taxon and the algorithm that produced it."""
    return classifications.filter(Q(taxon__isnull=True) | Q(algorithm__isnull=True))


@rule("C8", incremental=("algorithm",), risk="L", depends_on=("algorithm",))
def test_classification_category_map_is_its_algorithms(classifications):
    """When the algorithm has a category map, the classification carries that same map (NULL-safe: a
    missing copy is a violation); the scores are aligned with it."""
    with_map = classifications.filter(algorithm__category_map__isnull=False)
    return with_map.filter(IsDistinctFrom("category_map", "algorithm__category_map"))


@test_classification_category_map_is_its_algorithms.repair
def copy_the_algorithms_category_map(violators):
    """Copy the algorithm's category map onto the classification (what migration ml/0024 did)."""
    algorithm = Algorithm.objects.filter(pk=OuterRef("algorithm")).values("category_map")[:1]
    return violators.update(category_map=Subquery(algorithm))


@rule("C9", incremental=("applied_to",), hint="the lineage link is wrong: find the post-processing job that wrote the "
                                               "derived classification")
def test_derived_classification_shares_its_sources_detection(classifications):
    """A derived classification (applied_to set: class masking) is about the same detection as the
    classification it was derived from."""
    derived = classifications.filter(applied_to__isnull=False)
    return derived.filter(IsDistinctFrom("detection", "applied_to__detection"))


@rule("G1", hint="re-point agreed_with_prediction and applied_to at the oldest copy, then delete the copies")
def test_no_duplicate_classifications(classifications):
    """No two classifications of a detection share (taxon, algorithm, score): the ML backend's n² bug and
    re-deliveries.  The oldest (created_at, then id) is the original; every later copy is a violator.
    Orphans (no detection) are S1's, never grouped together."""
    copy = has_an_older_twin(Classification, ["detection", "taxon", "algorithm", "score"])
    return classifications.filter(detection__isnull=False).filter(copy)


@rule("G2", hint="the pipeline stored a score or array that does not match its category map; re-run it")
def test_classification_scores_match_the_score_and_category_map(classifications):
    """When ``scores`` is present, ``score`` = max(scores); and when the classification has a category
    map, ``scores`` and ``logits`` (each when present) have one entry per label."""
    labels = Cardinality("category_map__labels")
    score_is_not_the_max = Q(scores__isnull=False) & IsDistinctFrom("score", ArrayMax("scores"))
    return classifications.filter(
        score_is_not_the_max | NotEqual(Cardinality("scores"), labels) | NotEqual(Cardinality("logits"), labels)
    )


@rule("G3", severity="warn", hint="the taxon may be named differently from the label (search_names); check the map")
def test_classification_taxon_is_the_top_label(classifications):
    """(soft) The taxon's name is the category-map label at argmax(scores) (the first maximum).  Checked
    only when the classification has scores, a map and a taxon and the label exists (else G2 or S2)."""
    return classifications.filter(NotEqual("taxon__name", TopLabel("category_map__labels", "scores")))


@rule("G4", risk="M", depends_on=("derived",))
def test_masked_source_is_not_terminal(classifications):
    """A classification that a terminal derived classification was applied to (class masking) is no
    longer terminal: masking demotes its source (#1368).  The violators are the sources."""
    # applied_to IS NOT NULL is implied, but said: PostgreSQL then reads the few derived rows by their index
    # instead of every terminal classification
    derived = Classification.objects.filter(applied_to__isnull=False, applied_to=OuterRef("pk"), terminal=True)
    terminal_derived = Exists(derived)
    return classifications.filter(terminal=True).filter(terminal_derived)


@test_masked_source_is_not_terminal.repair
def demote_the_masked_source(violators):
    """Set the source's terminal flag to False, as masking does."""
    return violators.update(terminal=False)


@rule("G5", incremental=("taxon",), risk="M", depends_on=("taxon",))
def test_binary_moth_classification_is_not_terminal(classifications):
    """Binary moth / non-moth classifications (taxon named moth, non-moth or nonmoth, any case) are
    intermediate results, never terminal (migration ml/0015)."""
    binary = classifications.alias(label=Lower("taxon__name")).filter(label__in=BINARY_MOTH_LABELS)
    return binary.filter(terminal=True)


@test_binary_moth_classification_is_not_terminal.repair
def demote_the_binary_classification(violators):
    """Set terminal to False, as migration ml/0015 did."""
    return violators.update(terminal=False)


@rule("G6", incremental=True, hint="a score outside [0, 1] is a pipeline bug; re-run the classifier")
def test_classification_score_is_a_probability(classifications):
    """A classification's score lies in [0, 1] (NaN does not); a NULL score is not checked here."""
    return classifications.filter(Q(score__lt=0) | Q(score__gt=1))
