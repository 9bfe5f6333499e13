"""Think: committee scoring, decisions, and calibration with vs without knowledge."""

from __future__ import annotations

import random

import pytest

from workers.engine.calibration import brier_improvement, brier_score
from workers.engine.dream import KIND_BY_RULE, Proposal, proposal_id
from workers.engine.knowledge import Draft, validate_payload
from workers.engine.learning import FixRates, Outcome
from workers.engine.recall import Context
from workers.engine.rules import fingerprint
from workers.engine.think import ThinkConfig, assess, decision_outcomes, risk_patterns

THRESHOLD = {"long_function": 50, "high_complexity": 10, "bare_except": 0}
METRIC = {  # metric giving each default severity
    ("long_function", "low"): 60,
    ("long_function", "medium"): 90,
    ("long_function", "high"): 120,
    ("high_complexity", "low"): 12,
    ("high_complexity", "medium"): 18,
    ("high_complexity", "high"): 25,
    ("bare_except", "medium"): 1,
}


def make_proposal(rule: str, severity: str, name: str = "f", path: str = "m.py") -> Proposal:
    kind = KIND_BY_RULE[rule]
    fp = fingerprint(rule, path, name)
    return Proposal(
        id=proposal_id(kind, fp),
        kind=kind,
        rule=rule,
        fingerprint=fp,
        path=path,
        qualname=name,
        severity=severity,
        metric=METRIC[(rule, severity)],
        threshold=THRESHOLD[rule],
        expected_impact=0.6,
        score=0.6,
    )


def learned(pattern: str, rate: float, samples: int) -> Draft:
    effect = "effective" if rate >= 0.6 else "ineffective" if rate < 0.3 else "mixed"
    return Draft(
        "learned_pattern",
        {"pattern": pattern, "effect": effect, "success_rate": rate, "samples": samples},
        0.9,
    )


def test_without_knowledge_the_prior_is_used_and_nothing_is_executed_or_rejected():
    proposals = [make_proposal("long_function", s, name=s) for s in ("low", "medium", "high")]
    verdicts = assess(proposals)
    assert [a.predicted_success for a in verdicts] == [0.55, 0.5, 0.45]
    assert {a.evidence for a in verdicts} == {0.0}
    assert {a.decision for a in verdicts} <= {"approve", "defer"}


def test_learned_fix_rates_drive_the_prediction():
    proposal = make_proposal("long_function", "medium")
    knowledge = [learned("rule:long_function", 0.1, 1000), learned("rule:bare_except", 0.8, 10)]
    [verdict] = assess([proposal], knowledge)
    assert verdict.predicted_success == pytest.approx(0.1, abs=0.01)
    assert verdict.evidence == pytest.approx(1000 / 1010, abs=1e-4)
    # an unseen rule falls back to the pooled rate of all rules
    [other] = assess([make_proposal("high_complexity", "medium")], knowledge)
    pooled = (0.1 * 1000 + 0.8 * 10 + 0.5 * 4) / 1014
    assert other.predicted_success == pytest.approx(pooled, abs=1e-4)
    assert other.evidence == 0


def test_context_patterns_move_the_prediction():
    knowledge = [
        learned("rule:long_function", 0.2, 400),
        learned("rule:long_function|churn:high", 0.05, 200),
        learned("rule:long_function|churn:low", 0.35, 200),
    ]
    hot, cold, unknown = (
        make_proposal("long_function", "medium", name=n) for n in ("hot", "cold", "unknown")
    )
    contexts = {
        hot.id: {"churn": "high"},
        cold.id: Context(
            proposal_id=cold.id,
            target=cold.target,
            rule=cold.rule,
            churn=1,
            age_days=3.0,
            past_fixes=0,
            target_fixes=0,
            fix_rate=None,
            fix_samples=0,
            track_record="unknown",
        ),
    }
    verdicts = {a.target: a for a in assess([hot, cold, unknown], knowledge, contexts=contexts)}
    p_hot = verdicts["m.py::hot"].predicted_success
    p_cold = verdicts["m.py::cold"].predicted_success
    p_unknown = verdicts["m.py::unknown"].predicted_success
    assert p_hot < p_unknown < p_cold
    assert verdicts["m.py::cold"].context["churn"] == "low"


def test_received_issue_patterns_and_enrichments_supply_context():
    proposal = make_proposal("long_function", "medium")
    knowledge = [
        Draft(
            "issue_pattern",
            {"rule": "long_function", "location": "m.py::f", "severity": "medium"},
            0.9,
        ),
        Draft(
            "issue_pattern", {"rule": "deep_nesting", "location": "m.py::f", "severity": "low"}, 0.9
        ),
        Draft("context_enrichment", {"target": "m.py::f", "aspect": "churn", "value": "high"}, 0.9),
    ]
    [verdict] = assess([proposal], knowledge)
    assert verdict.context == {"churn": "high", "severity": "medium", "crowd": "multi"}
    [alone] = assess([proposal])
    assert alone.context == {"severity": "medium", "crowd": "single"}
    assert verdict.risk > alone.risk


def test_strong_evidence_leads_to_execute_or_reject():
    knowledge = [learned("rule:bare_except", 0.9, 300), learned("rule:long_function", 0.03, 300)]
    good = make_proposal("bare_except", "medium", name="good")
    bad = make_proposal("long_function", "high", name="bad")
    decisions = {a.rule: a.decision for a in assess([good, bad], knowledge)}
    assert decisions == {"bare_except": "execute", "long_function": "reject"}


def test_decision_and_risk_payloads_meet_the_contract():
    proposals = [make_proposal("long_function", s, name=s) for s in ("low", "medium", "high")]
    verdicts = assess(proposals, [learned("rule:long_function", 0.2, 50)])
    decisions = decision_outcomes(verdicts)
    assert [d.payload["proposal"] for d in decisions] == [p.id for p in proposals]
    for item in decisions:
        assert validate_payload("decision_outcome", item.payload) == []
        assert item.payload["outcome"] == "unknown"
    risks = risk_patterns(verdicts)
    assert [d.payload["pattern"] for d in risks] == ["rule:long_function|churn:unknown"]
    assert risks[0].payload["samples"] == 3
    assert validate_payload("risk_pattern", risks[0].payload) == []
    assert risk_patterns(verdicts, min_samples=4) == []


# Ground truth of the synthetic world: P(clean fix | the function is changed).
TRUTH = {
    ("long_function", "low"): 0.30,
    ("long_function", "medium"): 0.15,
    ("long_function", "high"): 0.05,
    ("high_complexity", "low"): 0.35,
    ("high_complexity", "medium"): 0.2,
    ("high_complexity", "high"): 0.1,
    ("bare_except", "medium"): 0.75,
}


def synthetic_world(rng: random.Random, count: int):
    cases = []
    for i in range(count):
        rule, severity = rng.choice(sorted(TRUTH))
        churn = rng.choice(["low", "medium", "high"])
        p = TRUTH[(rule, severity)] * (0.6 if churn == "high" else 1.0)
        proposal = make_proposal(rule, severity, name=f"f{i}")
        cases.append((proposal, churn, rng.random() < p))
    return cases


def test_knowledge_improves_calibration_by_more_than_ten_percent():
    rng = random.Random(20240607)
    training, evaluation = synthetic_world(rng, 600), synthetic_world(rng, 600)
    rates = FixRates()
    rates.add(
        Outcome(
            fingerprint=p.fingerprint,
            rule=p.rule,
            path=p.path,
            qualname=p.qualname,
            status="fixed" if fixed else "persisted",
            severity=p.severity,
            metric_before=p.metric,
            metric_after=None,
            proposal_id=p.id,
            context={"severity": p.severity, "churn": churn, "crowd": "single"},
        )
        for p, churn, fixed in training
    )
    knowledge = rates.learned_patterns()
    contexts = {p.id: {"churn": churn} for p, churn, _ in evaluation}
    proposals = [p for p, _, _ in evaluation]
    truth = {p.id: int(fixed) for p, _, fixed in evaluation}
    informed = [
        (a.predicted_success, truth[a.proposal_id])
        for a in assess(proposals, knowledge, contexts=contexts)
    ]
    blind = [
        (a.predicted_success, truth[a.proposal_id])
        for a in assess(proposals, [], contexts=contexts)
    ]
    assert brier_score(blind) > 0.2
    assert brier_improvement(informed, blind) >= 0.10
    # and the learned model is not overconfident: close to the best possible (true p) score
    oracle = [
        (TRUTH[(p.rule, p.severity)] * (0.6 if churn == "high" else 1.0), int(fixed))
        for p, churn, fixed in evaluation
    ]
    assert brier_score(informed) <= brier_score(oracle) + 0.01


def test_config_is_honoured():
    proposal = make_proposal("long_function", "medium")
    [verdict] = assess([proposal], config=ThinkConfig(prior=0.3))
    assert verdict.predicted_success == 0.3


def test_unchanged_decisions_are_not_repeated():
    proposals = [make_proposal("long_function", "medium", name=n) for n in ("a", "b")]
    sent = decision_outcomes(assess(proposals))
    assert decision_outcomes(assess(proposals), known=sent) == []
    changed = decision_outcomes(
        assess(proposals, [learned("rule:long_function", 0.05, 500)]), known=sent
    )
    assert [d.payload["decision"] for d in changed] == ["reject", "reject"]


def test_proposal_quality_rate_and_past_fixes_are_used_without_learned_patterns():
    proposal = make_proposal("bare_except", "medium")
    quality = Draft(
        "proposal_quality",
        {
            "proposal_kind": "narrow_except",
            "rule": "bare_except",
            "quality": "high",
            "success_rate": 0.8,
        },
        0.8,
    )
    fixes = [
        Draft(
            "successful_fix",
            {"rule": "bare_except", "target": f"x.py::f{i}", "fix": "narrow_except"},
            0.8,
        )
        for i in range(2)
    ]
    [by_quality] = assess([proposal], [quality])
    assert by_quality.predicted_success == 0.8
    assert by_quality.decision == "approve"
    [with_fixes] = assess([proposal], [quality, *fixes])
    assert with_fixes.decision == "execute"
