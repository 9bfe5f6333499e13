"""Think: committee scoring, decisions, and calibration with vs without knowledge."""

from __future__ import annotations

import random

import pytest

from workers.engine.calibration import auc, brier_score, brier_skill
from workers.engine.dream import KIND_BY_RULE, Proposal, proposal_id
from workers.engine.knowledge import Draft, validate_payload
from workers.engine.learning import FixRates, Outcome
from workers.engine.rules import fingerprint, margin_contexts
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


def test_without_knowledge_the_forecast_is_the_base_rate():
    proposals = [make_proposal("long_function", s, name=s) for s in ("low", "medium", "high")]
    verdicts = assess(proposals, base=(3, 99))  # Think saw 3 fixes in 99 of its own outcomes
    assert [a.predicted_success for a in verdicts] == [0.035] * 3  # (3 + 0.5) / (99 + 1)
    assert {a.evidence for a in verdicts} == {0.0}
    assert {a.decision for a in verdicts} <= {"approve", "defer"}
    # nothing known at all: the Jeffreys prior's 0.5
    assert {a.predicted_success for a in assess(proposals)} == {0.5}


def test_learned_fix_rates_move_the_forecast_from_the_base_rate():
    proposal = make_proposal("long_function", "medium")
    base = (10, 200)
    b = 10.5 / 201

    def forecast(rate: float, samples: int) -> float:
        [verdict] = assess([proposal], [learned("rule:long_function", rate, samples)], base=base)
        return verdict.predicted_success

    assert b < forecast(0.2, 1000) < 0.2  # moved toward the rule's rate, damped
    assert forecast(0.01, 1000) < b
    assert forecast(0.2, 2) == pytest.approx(b, abs=1e-4)  # below min_samples: ignored
    assert b < forecast(0.2, 5) < forecast(0.2, 50)  # thin evidence is shrunk to the base rate
    [verdict] = assess([proposal], [learned("rule:long_function", 0.2, 1000)], base=base)
    assert verdict.evidence == pytest.approx(1000 / 1010, abs=1e-4)
    # an unseen rule stays at the base rate
    [other] = assess(
        [make_proposal("high_complexity", "medium")],
        [learned("rule:long_function", 0.2, 1000)],
        base=base,
    )
    assert other.predicted_success == pytest.approx(b, abs=1e-4)
    assert other.evidence == 0


def test_a_pattern_learned_on_several_projects_counts_all_their_outcomes():
    """Two Learning sources (two projects) state the same pattern: Think pools their counts."""
    proposal = make_proposal("long_function", "medium")
    base = (10, 200)

    def forecast(*items: Draft) -> float:
        [verdict] = assess([proposal], list(items), base=base)
        return verdict.predicted_success

    here, elsewhere = learned("rule:long_function", 0.2, 100), learned("rule:long_function", 0, 300)
    assert forecast(here, elsewhere) == forecast(learned("rule:long_function", 0.05, 400))
    assert forecast(here, elsewhere) < 10.5 / 201 < forecast(here)
    # a project's thin evidence alone is ignored; pooled with another's it counts
    thin = learned("rule:long_function", 0.5, 2)
    assert forecast(thin) == pytest.approx(10.5 / 201, abs=1e-4)
    assert forecast(thin, learned("rule:long_function", 0.5, 2)) > 10.5 / 201


def test_pooled_margin_patterns_move_the_forecast():
    knowledge = [
        learned("rule:*|margin:near", 0.15, 300),
        learned("rule:*|margin:far", 0.005, 300),
        learned("rule:*|slack:s10", 0.1, 300),
        learned("rule:*|slack:big", 0.005, 300),
    ]
    near = make_proposal("long_function", "low", name="near")  # 60 lines vs 50
    far = make_proposal("long_function", "high", name="far")  # 120 lines
    verdicts = {a.target: a for a in assess([near, far], knowledge, base=(20, 600))}
    b = 20.5 / 601
    assert verdicts["m.py::near"].context["margin"] == "near"
    assert verdicts["m.py::far"].context["margin"] == "far"
    assert verdicts["m.py::far"].predicted_success < b < verdicts["m.py::near"].predicted_success


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
    margin = {"margin": "mid", "slack": "big"}  # 90 lines vs 50
    assert verdict.context == {"churn": "high", "severity": "medium", "crowd": "multi", **margin}
    [alone] = assess([proposal])
    assert alone.context == {"severity": "medium", "crowd": "single", **margin}
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
    ("long_function", "low"): 0.12,
    ("long_function", "medium"): 0.04,
    ("long_function", "high"): 0.01,
    ("high_complexity", "low"): 0.2,
    ("high_complexity", "medium"): 0.06,
    ("high_complexity", "high"): 0.02,
    ("bare_except", "medium"): 0.3,
}


def synthetic_world(rng: random.Random, count: int):
    cases = []
    for i in range(count):
        rule, severity = rng.choice(sorted(TRUTH))
        proposal = make_proposal(rule, severity, name=f"f{i}")
        cases.append((proposal, rng.random() < TRUTH[(rule, severity)]))
    return cases


def outcome_of(proposal: Proposal, fixed: bool) -> Outcome:
    return Outcome(
        fingerprint=proposal.fingerprint,
        rule=proposal.rule,
        path=proposal.path,
        qualname=proposal.qualname,
        status="fixed" if fixed else "persisted",
        severity=proposal.severity,
        metric_before=proposal.metric,
        metric_after=None,
        proposal_id=proposal.id,
        context={"crowd": "single", **margin_contexts(proposal.rule, proposal.metric)},
    )


def test_knowledge_beats_the_base_rate_and_stays_calibrated():
    rng = random.Random(20240607)
    training, evaluation = synthetic_world(rng, 1500), synthetic_world(rng, 1500)
    rates = FixRates()
    rates.add(outcome_of(p, fixed) for p, fixed in training)
    knowledge = rates.learned_patterns()
    base = (sum(fixed for _, fixed in training), len(training))
    proposals = [p for p, _ in evaluation]
    truth = {p.id: int(fixed) for p, fixed in evaluation}
    informed = [
        (a.predicted_success, truth[a.proposal_id]) for a in assess(proposals, knowledge, base=base)
    ]
    blind = [(a.predicted_success, truth[a.proposal_id]) for a in assess(proposals, base=base)]
    assert len({p for p, _ in blind}) == 1  # without knowledge: the base rate
    assert brier_skill(brier_score(informed), brier_score(blind)) >= 0.05
    assert auc(informed) >= 0.7
    assert brier_skill(brier_score(informed), brier_score(blind)) >= 0.05
    oracle = [(TRUTH[(p.rule, p.severity)], int(fixed)) for p, fixed in evaluation]
    assert brier_score(informed) <= brier_score(oracle) + 0.005


def test_config_is_honoured():
    proposal = make_proposal("long_function", "medium")
    knowledge = [learned("rule:long_function", 0.3, 1000)]
    [verdict] = assess([proposal], knowledge, base=(1, 99), config=ThinkConfig(weight=0.0))
    assert verdict.predicted_success == 0.015


def test_unchanged_decisions_are_not_repeated():
    proposals = [make_proposal("long_function", "medium", name=n) for n in ("a", "b")]
    sent = decision_outcomes(assess(proposals))
    assert decision_outcomes(assess(proposals), known=sent) == []
    changed = decision_outcomes(
        assess(proposals, [learned("rule:long_function", 0.05, 500)]), known=sent
    )
    assert [d.payload["decision"] for d in changed] == ["reject", "reject"]


def test_past_fixes_allow_execution_without_learned_patterns():
    proposal = make_proposal("bare_except", "medium")
    fixes = [
        Draft(
            "successful_fix",
            {"rule": "bare_except", "target": f"x.py::f{i}", "fix": "narrow_except"},
            0.8,
        )
        for i in range(2)
    ]
    [alone] = assess([proposal], base=(80, 99))
    assert alone.predicted_success == 0.805
    assert alone.decision == "approve"
    [with_fixes] = assess([proposal], fixes, base=(80, 99))
    assert with_fixes.decision == "execute"
