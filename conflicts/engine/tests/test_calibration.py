"""The truth-discovery scenario family, end-state scoring and the reliability diagram."""

from collections import Counter

import pytest

from conflicts.engine.calibration import (
    calibration_pairs,
    end_state,
    format_diagram,
    reliability_diagram,
)
from conflicts.engine.scenarios import Scenario, generate, truth_family
from conflicts.engine.scoring import ConflictRecord, RunOutcome


def test_truth_family_is_the_issue_setup_and_deterministic():
    scenario = generate(truth_family(seed=2))
    assert generate(truth_family(seed=2)).digest() == scenario.digest()
    assert Scenario.from_dict(scenario.to_dict()).digest() == scenario.digest()
    profiles = scenario.profiles
    assert len(profiles) == 10
    assert sorted(p.accuracy for p in profiles if not p.reliable) == [0.3, 0.3, 0.3]
    assert sum(p.copies is not None for p in profiles) == 1  # two unreliable ones copy
    per_subject = Counter(e.subject for e in scenario.events)
    assert set(per_subject.values()) == {5}
    assert all(0.6 <= e.confidence <= 0.95 for e in scenario.events)
    assert 0 < scenario.warmup_end < scenario.horizon


def outcome_with(scenario, active):
    out = RunOutcome(strategy="truth", threshold=0.85)
    out.end_state = active
    return out


def test_end_state_counts_right_wrong_undecided_and_majority():
    scenario = generate(truth_family(seed=1, subjects=50))
    tests = {
        (e.knowledge_type, e.subject) for e in scenario.events if e.offset >= scenario.warmup_end
    }
    test_keys = sorted(
        k
        for k in tests
        if min(e.offset for e in scenario.events if e.subject == k[1]) >= scenario.warmup_end
    )
    truth = {k: scenario.truth_at(k[0], k[1], 0) for k in test_keys}
    wrong_claim = {k: next(c for c in ("low", "high") if c != truth[k]) for k in test_keys}
    a, b, *rest = test_keys
    active = {a: {truth[a]}, b: {wrong_claim[b]}} | {k: {truth[k], wrong_claim[k]} for k in rest}
    e = end_state(scenario, outcome_with(scenario, active))
    assert (e.subjects, e.right, e.wrong, e.undecided) == (len(test_keys), 1, 1, len(rest))
    assert 0.5 < e.majority_accuracy <= 1.0


def test_reliability_diagram_and_ece():
    pairs = [(0.95, True)] * 19 + [(0.95, False)] + [(0.6, True)] * 3 + [(0.6, False)] * 7
    bins, ece = reliability_diagram(pairs)
    full = [b for b in bins if b.count]
    assert [(b.count, round(b.observed, 2)) for b in full] == [(10, 0.3), (20, 0.95)]
    assert ece == pytest.approx(10 / 30 * 0.3)
    assert "ECE" in format_diagram(bins, ece)


def test_calibration_pairs_skip_warmup_dissolved_and_no_true_claim():
    scenario = generate(truth_family(seed=1, subjects=20))
    late = next(e for e in scenario.events if e.offset >= scenario.warmup_end)
    truth = scenario.truth_at(late.knowledge_type, late.subject, 0)

    def record(cid, opened, resolution, claims, proposal):
        return ConflictRecord(
            cid,
            late.knowledge_type,
            late.subject,
            0,
            opened,
            opened + 1,
            resolution,
            proposal,
            0.9,
            proposal,
            claims,
            (0,),
        )

    out = RunOutcome("truth", 0.85)
    out.conflicts = [
        record(1, late.offset, "auto", (truth, "zzz"), truth),
        record(2, 0.0, "auto", (truth, "zzz"), truth),
        record(3, late.offset, "dissolved", (truth, "zzz"), truth),
        record(4, late.offset, "open", ("yyy", "zzz"), "zzz"),
        record(5, late.offset, "open", (truth, "zzz"), "zzz"),
    ]
    assert calibration_pairs(scenario, out) == [(0.9, True), (0.9, False)]


def test_bayes_ceiling_of_the_truth_family_is_above_majority_and_below_one():
    from conflicts.engine.calibration import truth_family_ceiling

    scenario = generate(truth_family(seed=1, subjects=100))
    ceiling = truth_family_ceiling(scenario)
    vote = end_state(scenario, RunOutcome("none", 1.0))
    assert vote.majority_accuracy < ceiling.map_right / ceiling.subjects <= 1.0
    right, wrong = ceiling.at[0.95]
    assert right + wrong <= ceiling.at[0.85][0] + ceiling.at[0.85][1] <= ceiling.subjects
    # No threshold chosen after the fact beats deciding in order of the posterior; with at
    # most 1 % wrong it is at least what 0.95 gets when that stays within 1 %.
    if wrong <= 0.01 * ceiling.subjects:
        assert ceiling.best_within_1pct >= right
    assert ceiling.best_within_1pct <= ceiling.map_right


def test_best_right_within_a_wrong_budget_decides_in_order_of_the_posterior():
    from conflicts.engine.calibration import best_right_within

    decisions = [(0.8, True), (0.99, True), (0.9, True), (0.98, False)]
    assert best_right_within(decisions, subjects=100) == 3  # one wrong allowed: decide all
    assert best_right_within(decisions, subjects=50) == 1  # none allowed: stop before 0.98
