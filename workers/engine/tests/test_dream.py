"""Dream: proposals from issues, ranking by knowledge, proposal_quality payloads."""

from __future__ import annotations

from workers.engine.analysis import Analyzer, issue_patterns
from workers.engine.dream import KIND_BY_RULE, Proposal, proposal_id, proposal_qualities, propose
from workers.engine.knowledge import Draft, validate_payload
from workers.engine.rules import RULE_SPECS

from .sources import function_of_complexity, function_of_length, function_of_nesting


def snapshot():
    return Analyzer().analyze_files(
        {
            "core/a.py": function_of_length("long", 80) + "\n" + function_of_complexity("cx", 14),
            "core/b.py": function_of_nesting("deep", 6)
            + "def mutable(a=[]):\n    try:\n        return a\n    except:\n        return None\n",
        }
    )


def test_every_rule_has_a_proposal_kind():
    assert set(KIND_BY_RULE) == set(RULE_SPECS)


def test_proposals_have_stable_ids_kinds_and_impact_in_range():
    snap = snapshot()
    proposals = propose(snap.issues.values())
    assert {(p.rule, p.kind) for p in proposals} == {
        ("long_function", "extract_function"),
        ("high_complexity", "simplify_conditionals"),
        ("deep_nesting", "flatten_nesting"),
        ("mutable_default_argument", "use_none_default"),
        ("bare_except", "narrow_except"),
    }
    for p in proposals:
        assert p.id == proposal_id(p.kind, p.fingerprint)
        assert p.id.startswith(p.kind + "-") and len(p.id) == len(p.kind) + 17
        assert 0 < p.expected_impact <= 1
    again = propose(
        Analyzer()
        .analyze_files({"core/b.py": "\n\n# shifted\n" + function_of_nesting("deep", 6)})
        .issues.values()
    )
    deep = next(p for p in proposals if p.rule == "deep_nesting")
    assert [p.id for p in again] == [deep.id]


def test_proposals_from_issue_pattern_payloads_equal_those_from_issues():
    snap = snapshot()
    from_issues = propose(snap.issues.values())
    from_payloads = propose([d.payload for d in issue_patterns(snap)])
    assert from_payloads == from_issues


def test_ranking_is_deterministic_and_follows_impact_without_knowledge():
    proposals = propose(snapshot().issues.values())
    scores = [p.score for p in proposals]
    assert scores == sorted(scores, reverse=True)
    assert proposals == propose(reversed(list(snapshot().issues.values())))


def test_a_kind_that_succeeded_before_ranks_higher():
    snap = snapshot()
    baseline = [p.rule for p in propose(snap.issues.values())]
    fixes = [
        Draft(
            "successful_fix",
            {"rule": "bare_except", "target": f"x.py::f{i}", "fix": "narrow_except"},
            0.8,
        )
        for i in range(10)
    ]
    quality = [
        Draft(
            "proposal_quality",
            {
                "proposal_kind": "narrow_except",
                "rule": "bare_except",
                "quality": "high",
                "score": 1.0,
            },
            0.9,
        )
    ]
    boosted = [p.rule for p in propose(snap.issues.values(), fixes + quality)]
    assert baseline.index("bare_except") > boosted.index("bare_except") == 0


def test_learned_fix_rate_outweighs_raw_impact():
    snap = snapshot()
    learned = [
        {
            "knowledge_type": "learned_pattern",
            "payload": {
                "pattern": "rule:long_function",
                "effect": "ineffective",
                "success_rate": 0.0,
                "samples": 50,
            },
        },
        {
            "knowledge_type": "learned_pattern",
            "payload": {
                "pattern": "rule:deep_nesting",
                "effect": "effective",
                "success_rate": 1.0,
                "samples": 50,
            },
        },
    ]
    ranked = [p.rule for p in propose(snap.issues.values(), learned)]
    assert ranked[0] == "deep_nesting"
    assert ranked[-1] == "long_function"
    assert "fix rate 0.00 over 50" in propose(snap.issues.values(), learned)[-1].reasons


def test_increasing_complexity_trend_boosts_complexity_proposals():
    snap = snapshot()
    trend = [Draft("complexity_trend", {"scope": "core", "direction": "increasing"}, 0.8)]
    plain = {p.id: p.score for p in propose(snap.issues.values())}
    for p in propose(snap.issues.values(), trend):
        factor = (
            1.1
            if p.kind in ("extract_function", "simplify_conditionals", "flatten_nesting")
            else 1.0
        )
        assert abs(p.score - plain[p.id] * factor) < 1e-6


def test_proposal_quality_payloads():
    proposals = propose(snapshot().issues.values())
    drafts = {
        (d.payload["proposal_kind"], d.payload["rule"]): d for d in proposal_qualities(proposals)
    }
    assert len(drafts) == 5
    for item in drafts.values():
        assert validate_payload("proposal_quality", item.payload) == []
        assert item.confidence == 0.4  # no evidence yet
    learned = [
        Draft(
            "learned_pattern",
            {
                "pattern": "rule:bare_except",
                "effect": "effective",
                "success_rate": 0.9,
                "samples": 40,
            },
            0.9,
        )
    ]
    informed = {
        (d.payload["proposal_kind"], d.payload["rule"]): d
        for d in proposal_qualities(proposals, learned)
    }
    narrow = informed[("narrow_except", "bare_except")]
    assert narrow.payload["quality"] == "high"
    assert narrow.payload["success_rate"] == 0.9
    assert narrow.confidence == 0.9


def test_proposal_round_trips_through_a_dict():
    proposal = propose(snapshot().issues.values())[0]
    data = proposal.as_dict()
    assert data["target"] == proposal.target
    assert Proposal.from_dict(data) == proposal
