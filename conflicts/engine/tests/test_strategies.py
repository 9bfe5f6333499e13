import json
import math
import random

import pytest

from conflicts.engine.candidates import Trust
from conflicts.engine.strategies import (
    STRATEGIES,
    AuthorityStrategy,
    ConsensusStrategy,
    HybridStrategy,
    HybridWeights,
    MajorityVoteStrategy,
    RecencyStrategy,
    get_strategy,
)

from .factories import DISTRUSTED, TRUSTED, cand

DAY = 86400.0
ALL = sorted(STRATEGIES)


def mixed_candidates():
    return [
        cand(1, "analysis-1", "high", confidence=0.9, freshness=0.9, observed_at=10, trust=TRUSTED),
        cand(2, "think-1", "low", confidence=0.7, freshness=0.95, observed_at=20, trust=DISTRUSTED),
        cand(3, "think-2", "high", confidence=0.6, freshness=0.5, observed_at=5),
        cand(4, "dream-1", "medium", confidence=0.8, freshness=1.0, observed_at=30),
    ]


# --- the shared contract -----------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_proposal_partitions_items_and_is_json_serialisable(name):
    cands = mixed_candidates()
    p = get_strategy(name).propose(cands)
    assert p.strategy == name
    assert sorted(p.winner_item_ids + p.loser_item_ids) == [1, 2, 3, 4]
    assert all(c.claim == p.winner_claim for c in cands if c.item_id in p.winner_item_ids)
    assert set(p.scores) == {"high", "low", "medium"}
    assert 0.0 <= p.margin <= 1.0
    blob = json.loads(json.dumps(p.to_dict()))
    assert [c["item_id"] for c in blob["inputs"]["candidates"]] == [1, 2, 3, 4]
    assert blob["inputs"]["candidates"][0]["trust"]["alpha"] == TRUSTED.alpha


@pytest.mark.parametrize("name", ALL)
def test_proposal_does_not_depend_on_candidate_order(name):
    cands = mixed_candidates()
    first = get_strategy(name).propose(cands)
    for seed in range(5):
        shuffled = cands[:]
        random.Random(seed).shuffle(shuffled)
        again = get_strategy(name).propose(shuffled)
        assert again.winner_claim == first.winner_claim
        assert again.margin == pytest.approx(first.margin)


@pytest.mark.parametrize("name", ALL)
def test_one_source_or_one_claim_is_uncontested(name):
    alone = get_strategy(name).propose([cand(1, "a", "high")])
    assert (alone.winner_claim, alone.margin, alone.loser_item_ids) == ("high", 1.0, ())
    agreeing = get_strategy(name).propose([cand(1, "a", "high"), cand(2, "b", "high")])
    assert agreeing.winner_item_ids == (1, 2) and agreeing.margin == 1.0


@pytest.mark.parametrize("name", ALL)
def test_symmetric_disagreement_is_an_explicit_tie_broken_by_latest_observation(name):
    # Identical in everything but the claim and the observation time (equal freshness is
    # kept on purpose: only the documented tie-break may decide).
    cands = [cand(1, "a", "low", observed_at=100.0), cand(2, "b", "high", observed_at=200.0)]
    p = get_strategy(name).propose(cands)
    assert p.margin == 0.0 and p.is_tie
    assert p.winner_claim == "high"
    same_time = [cand(1, "a", "low", observed_at=5.0), cand(2, "b", "high", observed_at=5.0)]
    assert get_strategy(name).propose(same_time).winner_claim == "high"  # claim name order


@pytest.mark.parametrize("name", ALL)
def test_bad_input_is_rejected(name):
    with pytest.raises(ValueError):
        get_strategy(name).propose([])
    with pytest.raises(ValueError, match="distinct"):
        get_strategy(name).propose([cand(1, "a", "x"), cand(1, "b", "y")])


def test_registry_knows_the_six_strategies_and_passes_options():
    assert set(ALL) == {"majority", "consensus", "recency", "authority", "hybrid", "truth"}
    hybrid = get_strategy("hybrid", weights=HybridWeights(trust=1.0, confidence=0.0))
    assert isinstance(hybrid, HybridStrategy) and hybrid.weights.trust == 1.0
    with pytest.raises(KeyError, match="unknown strategy"):
        get_strategy("coin-flip")


# --- majority ------------------------------------------------------------------------------


def test_majority_counts_sources_and_margin_is_the_share_gap():
    cands = [cand(1, "a", "x"), cand(2, "b", "x"), cand(3, "c", "y", confidence=1.0)]
    p = MajorityVoteStrategy().propose(cands)
    assert p.winner_claim == "x"
    assert p.margin == pytest.approx(1 / 3)


def test_majority_counts_a_source_once_per_claim():
    cands = [cand(1, "a", "x"), cand(2, "a", "x"), cand(3, "b", "y"), cand(4, "c", "y")]
    assert MajorityVoteStrategy().propose(cands).winner_claim == "y"


# --- consensus -----------------------------------------------------------------------------


def test_consensus_weighs_votes_by_confidence():
    cands = [cand(1, "a", "x", confidence=0.95), cand(2, "b", "y", confidence=0.5)]
    p = ConsensusStrategy().propose(cands)
    assert p.winner_claim == "x"
    assert p.margin == pytest.approx(0.45 / 1.45)


def test_consensus_does_not_count_a_copier_as_a_second_opinion():
    leader = cand(1, "a", "x", confidence=0.8)
    other = cand(3, "b", "y", confidence=0.9)
    copier = cand(2, "a-copy", "x", confidence=0.8, independence=0.1)
    assert ConsensusStrategy().propose([leader, copier, other]).winner_claim == "y"
    naive = cand(2, "a-copy", "x", confidence=0.8)  # same copy, not recognised
    assert ConsensusStrategy().propose([leader, naive, other]).winner_claim == "x"


# --- recency -------------------------------------------------------------------------------


def test_recency_prefers_the_freshest_item_with_a_relative_gap_margin():
    stale = cand(1, "a", "x", freshness=0.25, observed_at=0)
    fresh = cand(2, "b", "y", freshness=1.0, observed_at=10)
    p = RecencyStrategy().propose([stale, fresh])
    assert p.winner_claim == "y"
    assert p.margin == pytest.approx(0.75)
    # The relative gap does not change as both items age.
    older = RecencyStrategy().propose(
        [cand(1, "a", "x", freshness=0.125), cand(2, "b", "y", freshness=0.5)]
    )
    assert older.margin == pytest.approx(0.75)


# --- authority -----------------------------------------------------------------------------


def test_authority_lets_one_trusted_source_beat_two_distrusted_ones():
    cands = [
        cand(1, "good", "x", trust=TRUSTED),
        cand(2, "bad-1", "y", trust=DISTRUSTED),
        cand(3, "bad-2", "y", trust=DISTRUSTED),
    ]
    assert AuthorityStrategy().propose(cands).winner_claim == "x"
    assert MajorityVoteStrategy().propose(cands).winner_claim == "y"


def test_pinned_trust_overrides_what_was_learned():
    learned_bad_pinned_good = Trust(alpha=2, beta=30, pinned=0.95)
    learned_good_pinned_bad = Trust(alpha=30, beta=2, pinned=0.05)
    cands = [
        cand(1, "admin-vouched", "x", trust=learned_bad_pinned_good),
        cand(2, "admin-distrusted", "y", trust=learned_good_pinned_bad),
        cand(3, "newcomer", "y"),
    ]
    for strategy in (AuthorityStrategy(), HybridStrategy()):
        p = strategy.propose(cands)
        assert p.winner_claim == "x"
        recorded = {c["source"]: c["trust"] for c in p.inputs["candidates"]}
        assert recorded["admin-vouched"]["pinned"] == 0.95


def test_authority_ignores_confidence_and_freshness():
    cands = [
        cand(1, "good", "x", trust=TRUSTED, confidence=0.3, freshness=0.1),
        cand(2, "bad", "y", trust=DISTRUSTED, confidence=0.99, freshness=1.0),
    ]
    assert AuthorityStrategy().propose(cands).winner_claim == "x"


# --- hybrid --------------------------------------------------------------------------------


def _freshness(age_days: float, decay_days: float = 7.0) -> float:
    return math.exp(-age_days / decay_days)


def test_hybrid_lets_a_fresh_observation_beat_a_stale_majority():
    stale = [
        cand(
            i,
            f"old-{i}",
            "medium",
            confidence=0.9,
            trust=TRUSTED,
            freshness=_freshness(20),
            observed_at=0,
        )
        for i in range(1, 4)
    ]
    fresh = cand(
        9, "new", "critical", confidence=0.9, trust=TRUSTED, freshness=1.0, observed_at=20 * DAY
    )
    p = HybridStrategy().propose([*stale, fresh])
    assert p.winner_claim == "critical"
    assert MajorityVoteStrategy().propose([*stale, fresh]).winner_claim == "medium"


def test_hybrid_keeps_a_recent_majority_against_one_dissenter():
    recent = [
        cand(
            i,
            f"peer-{i}",
            "medium",
            confidence=0.9,
            trust=TRUSTED,
            freshness=_freshness(1 / 24),
            observed_at=0,
        )
        for i in range(1, 4)
    ]
    dissent = cand(
        9, "new", "critical", confidence=0.9, trust=TRUSTED, freshness=1.0, observed_at=3600
    )
    p = HybridStrategy().propose([*recent, dissent])
    assert p.winner_claim == "medium" and p.margin > 0.9
    assert RecencyStrategy().propose([*recent, dissent]).winner_claim == "critical"


def test_hybrid_a_copy_with_zero_independence_changes_nothing():
    a = cand(1, "a", "x", confidence=0.8)
    b = cand(2, "b", "y", confidence=0.8, observed_at=0.0)
    copy = cand(3, "a-copy", "x", confidence=0.8, independence=0.0)
    without = HybridStrategy().propose([a, b])
    with_copy = HybridStrategy().propose([a, b, copy])
    assert with_copy.scores == pytest.approx(without.scores)
    assert with_copy.margin == pytest.approx(without.margin)
    counted = HybridStrategy().propose([a, b, cand(3, "a-copy", "x", confidence=0.8)])
    assert counted.winner_claim == "x" and counted.margin > 0


def test_hybrid_sends_honest_low_confidence_disagreement_to_review():
    # Two trusted sources, each unsure: the proposal must not clear the 0.85 threshold.
    cands = [
        cand(1, "a", "medium", confidence=0.6, trust=TRUSTED, observed_at=0),
        cand(2, "b", "high", confidence=0.55, trust=TRUSTED, observed_at=60),
        cand(3, "c", "medium", confidence=0.58, trust=TRUSTED, observed_at=120),
    ]
    p = HybridStrategy().propose(cands)
    assert p.winner_claim == "medium" and p.margin < 0.5


def test_hybrid_discounts_an_over_confident_untrusted_source():
    cands = [
        cand(1, "careful", "low", confidence=0.85, trust=TRUSTED),
        cand(2, "loud", "high", confidence=0.99, trust=DISTRUSTED),
    ]
    assert HybridStrategy().propose(cands).winner_claim == "low"
    assert ConsensusStrategy().propose(cands).winner_claim == "high"


def test_hybrid_uses_per_type_weights():
    cands = [
        cand(1, "trusted", "x", confidence=0.8, trust=TRUSTED, knowledge_type="issue_pattern"),
        cand(2, "sure", "y", confidence=0.95, knowledge_type="issue_pattern"),
    ]
    confidence_only = HybridWeights(trust=0.0, confidence=1.0)
    default = HybridStrategy()
    per_type = HybridStrategy(per_type={"issue_pattern": confidence_only})
    assert default.propose(cands).winner_claim == "x"
    p = per_type.propose(cands)
    assert p.winner_claim == "y"
    assert p.inputs["weights"]["trust"] == 0.0
    other_type = [
        cand(
            c.item_id,
            c.source,
            c.claim,
            confidence=c.confidence,
            trust=c.trust,
            knowledge_type="risk_pattern",
        )
        for c in cands
    ]
    assert per_type.propose(other_type).winner_claim == "x"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"trust": -1},
        {"trust": 0, "confidence": 0},
        {"p_max": 1.0},
        {"effective_claims": 1},
        {"forgetting": -0.5},
    ],
)
def test_hybrid_weights_reject_nonsense(kwargs):
    with pytest.raises(ValueError):
        HybridWeights(**kwargs)
