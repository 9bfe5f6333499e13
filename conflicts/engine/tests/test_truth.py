"""The calibrated truth-discovery model: item reliability, the posterior strategy, the EM."""

import random
from collections import defaultdict
from dataclasses import replace

import pytest

from conflicts.engine.candidates import Trust
from conflicts.engine.scenarios import generate, truth_family
from conflicts.engine.strategies import get_strategy
from conflicts.engine.truth import (
    TruthParams,
    TruthStrategy,
    claim_probabilities,
    estimate_trust,
    item_reliability,
)

from .factories import cand


def fresh_pair(a: float, b: float):
    return [cand(1, "new-1", "high", confidence=a), cand(2, "new-2", "low", confidence=b)]


# --- new sources: stated confidence still matters ----------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "applies"), [(0.99, 0.10, True), (0.80, 0.75, False), (0.70, 0.70, False)]
)
def test_two_fresh_sources_resolve_only_when_confidence_is_decisive(a, b, applies):
    p = get_strategy("truth").propose(fresh_pair(a, b))
    assert p.winner_claim == "high" or a == b
    assert (p.margin >= 0.85) is applies


def test_a_tie_has_margin_zero():
    assert get_strategy("truth").propose(fresh_pair(0.7, 0.7)).is_tie


def test_margin_is_the_winners_posterior_probability():
    cands = fresh_pair(0.9, 0.6)
    p = get_strategy("truth").propose(cands)
    assert p.margin == pytest.approx(claim_probabilities(cands)["high"])
    assert p.margin == pytest.approx(p.scores["high"])
    assert sum(p.scores.values()) == pytest.approx(1.0)


def test_independent_trusted_sources_push_above_any_single_confidence():
    trusted = Trust(alpha=2 + 45, beta=2 + 5)  # right 90 % of 50 decided claims
    cands = [
        cand(1, "a", "high", confidence=0.7, trust=trusted),
        cand(2, "b", "high", confidence=0.7, trust=trusted),
        cand(3, "c", "high", confidence=0.7, trust=trusted),
        cand(4, "d", "low", confidence=0.9),
    ]
    p = get_strategy("truth").propose(cands)
    assert p.winner_claim == "high"
    assert p.margin > 0.95 > max(c.confidence for c in cands)


def test_a_copy_does_not_count_as_a_second_opinion():
    base = [cand(1, "a", "high", confidence=0.8), cand(2, "b", "low", confidence=0.8)]
    copy = cand(3, "c", "low", confidence=0.8, independence=0.0)
    assert get_strategy("truth").propose([*base, copy]).is_tie


def test_record_outweighs_stated_confidence():
    liar = Trust(alpha=2 + 6, beta=2 + 34)  # claims 0.95, right 15 % of 40 decided claims
    assert item_reliability(Trust(), 0.95) == pytest.approx(0.95)
    assert item_reliability(liar, 0.95) < 0.3
    assert item_reliability(Trust(alpha=5, beta=5, pinned=0.6), 0.95) == 0.6
    p = get_strategy("truth").propose(
        [
            cand(1, "liar", "high", confidence=0.95, trust=liar),
            cand(2, "new", "low", confidence=0.7),
        ]
    )
    assert p.winner_claim == "low"


# --- the EM ----------------------------------------------------------------------------------


def synthetic(seed: int, subjects: int = 300):
    """Four good sources (85 %), two bad ones (30 %), all stating 0.9; 3 of 5 report."""
    rng = random.Random(seed)
    accuracy = {"g1": 0.85, "g2": 0.85, "g3": 0.85, "g4": 0.85, "b1": 0.3, "b2": 0.3}
    claims = ["low", "medium", "high", "critical"]
    cands, truth, n = [], {}, 0
    for s in range(subjects):
        truth[f"s{s}"] = t = rng.choice(claims)
        for src in rng.sample(sorted(accuracy), 3):
            n += 1
            said = t if rng.random() < accuracy[src] else rng.choice([c for c in claims if c != t])
            cands.append(cand(n, src, said, confidence=0.9, subject=f"s{s}"))
    return cands, truth, accuracy


def test_em_learns_reliability_without_any_label():
    cands, _truth, accuracy = synthetic(1)
    est = estimate_trust(cands)
    assert est.converged
    for src, acc in accuracy.items():
        assert est.trusts[src].learned_mean == pytest.approx(acc, abs=0.1), src


def test_em_labels_are_the_strongest_signal_and_pins_survive():
    cands, truth, _ = synthetic(2, subjects=60)
    # A person decided every subject the other way round for source g1's claims.
    labels = {c.item_id: c.claim != truth[c.subject] for c in cands if c.source == "g1"}
    est = estimate_trust(cands, labels, {"b1": Trust(pinned=0.9)})
    assert est.trusts["g1"].learned_mean < 0.3
    assert est.trusts["b1"].pinned == 0.9


def test_em_posteriors_beat_majority_on_the_truth_family():
    """Offline, with training labels, the model decides test subjects better than majority."""
    scenario = generate(truth_family(seed=3))
    first: dict[str, float] = {}
    for e in scenario.events:
        first.setdefault(e.subject, e.offset)
    cands = [
        cand(e.index, e.source, e.claim, confidence=e.confidence, subject=e.subject)
        for e in scenario.events
    ]
    labels = {e.index: e.correct for e in scenario.events if first[e.subject] < scenario.warmup_end}
    est = estimate_trust(cands, labels)
    by = defaultdict(list)
    for c in cands:
        by[c.subject].append(replace(c, trust=est.trusts[c.source]))
    truth_right = majority_right = n = 0
    for subject, group in by.items():
        if first[subject] < scenario.warmup_end:
            continue
        n += 1
        truth = scenario.truth_at("risk_pattern", subject, 0)
        truth_right += TruthStrategy().propose(group).winner_claim == truth
        majority_right += get_strategy("majority").propose(group).winner_claim == truth
    assert truth_right / n >= majority_right / n + 0.05


# --- the error model: how far a source's wrong reports spread ------------------------------


def reports(seed: int, decoy_share: float, subjects: int = 300):
    """Four sources right 80 % of the time over four claims; a wrong report names the
    subject's decoy with probability ``decoy_share``, else any wrong claim."""
    rng = random.Random(seed)
    claims = ["low", "medium", "high", "critical"]
    cands, labels, n = [], {}, 0
    for s in range(subjects):
        truth = rng.choice(claims)
        decoy = rng.choice([c for c in claims if c != truth])
        for src in ("a", "b", "c", "d"):
            n += 1
            if rng.random() < 0.8:
                said = truth
            elif rng.random() < decoy_share:
                said = decoy
            else:
                said = rng.choice([c for c in claims if c != truth])
            cands.append(cand(n, src, said, confidence=0.8, subject=f"s{s}"))
            if s < subjects // 3:  # a person decided the first third
                labels[n] = said == truth
    return cands, labels


def test_em_learns_a_wide_spread_when_errors_scatter():
    cands, labels = reports(1, decoy_share=0.0, subjects=900)
    est = estimate_trust(cands, labels)
    # Wrong reports agree a third of the time: 1 + 1/(1/3) = 4 claims (capped at 4 seen);
    # about 100 pairs of wrong reports per source leave the estimate within 3.3..4.
    for src in "abcd":
        assert 3.3 <= est.trusts[src].spread <= 4.0, src


def test_em_learns_a_narrow_spread_when_errors_coincide():
    cands, labels = reports(2, decoy_share=1.0)
    est = estimate_trust(cands, labels)
    for src in "abcd":
        assert est.trusts[src].spread < 2.3, src


def test_agreeing_sources_with_scattered_errors_pass_095_and_with_coinciding_ones_do_not():
    record = {"alpha": 2 + 40, "beta": 2 + 10}  # right 80 % of 50 decided claims

    def margin(spread):
        trust = Trust(**record, spread=spread)
        return (
            get_strategy("truth")
            .propose(
                [
                    cand(1, "a", "high", confidence=0.8, trust=trust),
                    cand(2, "b", "high", confidence=0.8, trust=trust),
                    cand(3, "c", "high", confidence=0.8, trust=trust),
                    cand(4, "d", "low", confidence=0.8, trust=trust),
                ]
            )
            .margin
        )

    assert margin(4.0) > 0.95 > margin(2.0)
    assert margin(None) == pytest.approx(margin(2.0))  # not learned yet: the prior of 2
    with pytest.raises(ValueError):
        Trust(spread=1.5)


def test_params_are_checked():
    with pytest.raises(ValueError):
        TruthParams(effective_claims=1)
    with pytest.raises(ValueError):
        TruthParams(p_max=1.0)


# --- outcome-grounded evidence (issue 12, item 5: the fleet's own disagreements) -----------


def fleet_claims(subjects: int = 20, observed_low: int = 16):
    """Two forecasters (``analysis``, ``think``) say ``medium`` on every subject with
    confidence; the observer (``learning``, what the changes did) says ``low`` on most."""
    cands, n = [], 0
    for s in range(subjects):
        said = "low" if s < observed_low else "medium"
        for source, claim, confidence in (
            ("analysis", "medium", 0.85),
            ("think", "medium", 0.8),
            ("learning", said, 0.8),
        ):
            n += 1
            cands.append(cand(n, source, claim, confidence=confidence, subject=f"rule:{s}"))
    return cands


def observed_by_learning(cands):
    observed = {c.subject: c.claim for c in cands if c.source == "learning"}
    return {c.item_id: (c.claim == observed[c.subject], 0.8) for c in cands}


def settle(cands, trusts):
    subject = [replace(c, trust=trusts[c.source]) for c in cands if c.subject == "rule:0"]
    return TruthStrategy().propose(subject)


def test_observed_outcomes_settle_the_fleets_disagreement_on_evidence():
    """Without outcomes, two agreeing forecasters outvote the observer and their common
    scale wins (the EM cannot tell a shared bias from agreement); with the observer's claims
    as outcome-grounded labels, the forecasters' record is measured against what happened
    and the observed claim is applied at 0.95."""
    cands = fleet_claims()
    plain = estimate_trust(cands)
    assert plain.trusts["learning"].learned_mean < plain.trusts["analysis"].learned_mean
    assert settle(cands, plain.trusts).winner_claim == "medium"

    grounded = estimate_trust(cands, observations=observed_by_learning(cands))
    assert grounded.trusts["learning"].learned_mean > 0.9
    assert grounded.trusts["analysis"].learned_mean < 0.4
    assert grounded.trusts["think"].learned_mean < 0.4
    proposal = settle(cands, grounded.trusts)
    assert proposal.winner_claim == "low" and proposal.margin >= 0.95


def test_a_persons_decision_outweighs_an_observed_outcome():
    cands = fleet_claims()
    observations = observed_by_learning(cands)
    # People decided every subject for the forecasters' ``medium``.
    labels = {c.item_id: c.claim == "medium" for c in cands}
    est = estimate_trust(cands, labels, observations=observations)
    assert est.trusts["analysis"].learned_mean > 0.9
    assert est.trusts["learning"].learned_mean < 0.4
    low = next(c for c in cands if c.source == "learning" and c.claim == "low")
    assert est.truth_probability[low.item_id] == 0.0
    # An observation weighs less than a decision, by construction.
    with pytest.raises(ValueError):
        TruthParams(outcome_weight=5.0)
    with pytest.raises(ValueError):
        TruthParams(outcome_weight=-1.0)
