import pytest

from conflicts.engine.detection import ConflictKind, classify, normalise

from .factories import cand


def test_kinds_against_items_of_other_sources():
    new = cand(10, "think-1", "high", confidence=0.9)
    existing = [
        cand(1, "analysis-1", "high", confidence=0.8),  # same claim, close confidence
        cand(2, "analysis-2", "high", confidence=0.3),  # same claim, far apart
        cand(3, "dream-1", "low", confidence=0.9),  # different claim
    ]
    assert classify(new, existing, mismatch_threshold=0.4) == [
        (ConflictKind.CORROBORATION, 1),
        (ConflictKind.CONFIDENCE_MISMATCH, 2),
        (ConflictKind.CONTRADICTION, 3),
    ]


def test_mismatch_threshold_is_strict():
    new = cand(10, "a", "high", confidence=0.9)
    at_threshold = cand(1, "b", "high", confidence=0.5)
    assert classify(new, [at_threshold], 0.4) == [(ConflictKind.CORROBORATION, 1)]
    assert classify(new, [at_threshold], 0.39) == [(ConflictKind.CONFIDENCE_MISMATCH, 1)]


def test_same_source_never_conflicts_with_itself():
    new = cand(10, "think-1", "high")
    own_older = cand(1, "think-1", "low")
    assert classify(new, [own_older, new], 0.4) == []


def test_only_the_same_type_and_subject_are_compared():
    new = cand(10, "a", "high", subject="lazy-import", knowledge_type="risk_pattern")
    others = [
        cand(1, "b", "low", subject="other-pattern"),
        cand(2, "c", "low", subject="lazy-import", knowledge_type="learned_pattern"),
        cand(3, "d", "low", subject="  Lazy-Import "),
    ]
    assert classify(new, others, 0.4) == [(ConflictKind.CONTRADICTION, 3)]


def test_claims_are_compared_normalised():
    new = cand(10, "a", "High")
    assert classify(new, [cand(1, "b", " high  ")], 0.4) == [(ConflictKind.CORROBORATION, 1)]
    assert normalise("  Very   High ") == "very high"


def test_rows_without_a_type_attribute_are_accepted():
    class Row:
        def __init__(self, item_id, source, claim, confidence, subject):
            self.item_id, self.source, self.claim = item_id, source, claim
            self.confidence, self.subject = confidence, subject

    found = classify(Row(2, "a", "x", 0.5, "s"), [Row(1, "b", "y", 0.5, "s")], 0.4)
    assert found == [(ConflictKind.CONTRADICTION, 1)]


@pytest.mark.parametrize("threshold", [-0.1, 1.1])
def test_threshold_must_be_a_probability_gap(threshold):
    with pytest.raises(ValueError):
        classify(cand(1, "a", "x"), [], threshold)
