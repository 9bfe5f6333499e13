"""Payload contracts, reading received items, and the in-memory exchange of the replay."""

from __future__ import annotations

from workers.engine.knowledge import Draft, draft, iter_payloads, subject_of, validate_payload
from workers.engine.replay import KnowledgeStore


def test_validate_payload_names_each_bad_field():
    assert validate_payload("nope", {}) == ["unknown knowledge type 'nope'"]
    errors = validate_payload(
        "learned_pattern",
        {"pattern": "", "effect": "great", "success_rate": 1.5, "samples": -1, "threshold": "x"},
    )
    assert errors == [
        "pattern: not a string",
        "effect: 'great' not in ('effective', 'ineffective', 'mixed')",
        "success_rate: 1.5 outside 0..1",
        "samples: not an int >= 0",
        "threshold: not a number",
    ]
    assert validate_payload("decision_outcome", {"proposal": "p"}) == [
        "decision: required",
        "predicted_success: required",
    ]
    assert validate_payload(
        "knowledge_retrieval", {"query": "q", "hit_rate": True, "latency_ms": -1}
    ) == ["hit_rate: not a number", "latency_ms: -1 < 0"]
    assert (
        validate_payload("risk_pattern", {"pattern": "p", "risk_level": "low", "extra": object()})
        == []
    )


def test_subject_mirrors_the_registry():
    payload = {"rule": "Long_Function ", "target": "a.py::F", "fix": "x"}
    assert subject_of("successful_fix", payload) == "long_function a.py::f"


def test_iter_payloads_reads_drafts_and_exchange_items_and_skips_junk():
    items = [
        Draft("issue_pattern", {"rule": "r"}, 0.5),
        {
            "knowledge_type": "issue_pattern",
            "payload": {"rule": "s"},
            "confidence": 0.8,
            "freshness": 0.5,
        },
        {"knowledge_type": "issue_pattern", "payload": {"rule": "t"}},
        {"knowledge_type": "issue_pattern", "payload": "not a dict"},
        {"knowledge_type": "issue_pattern", "payload": {}, "confidence": "high"},
        {"knowledge_type": "risk_pattern", "payload": {"pattern": "p"}},
        "garbage",
    ]
    assert [(p.get("rule"), w) for p, w in iter_payloads(items, "issue_pattern")] == [
        ("r", 0.5),
        ("s", 0.4),
        ("t", 1.0),
    ]


def test_draft_clamps_confidence_and_serialises():
    item = draft("risk_pattern", {"pattern": "p", "risk_level": "low"}, 1.7, "high")
    assert item.confidence == 1.0
    assert item.as_dict() == {
        "knowledge_type": "risk_pattern",
        "payload": {"pattern": "p", "risk_level": "low"},
        "confidence": 1.0,
        "urgency": "high",
    }


def test_store_without_exchange_gives_workers_only_their_own_items():
    fix = Draft("successful_fix", {"rule": "r", "target": "a.py::f", "fix": "x"}, 0.8)
    for exchange, expected in ((True, [fix]), (False, [])):
        store = KnowledgeStore(exchange=exchange)
        store.publish("learning", [fix])
        assert store.for_worker("think") == expected
        assert store.for_worker("learning", ["successful_fix"]) == [fix]
    store = KnowledgeStore()
    newer = Draft("successful_fix", {"rule": "r", "target": "a.py::f", "fix": "y"}, 0.8)
    store.publish("learning", [fix, newer])
    assert store.for_worker("think") == [newer]  # same subject: refreshed, not piled up
    assert store.published == {"successful_fix": 2}
