"""Broadcast, bulk broadcast, idempotency and bad input on the REST API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from conftest import issue_payload, risk_payload
from knowledge.models import Event, IdempotencyRecord, KnowledgeItem

pytestmark = pytest.mark.django_db


def test_broadcast_answers_201_with_item_fields_other_programs_rely_on(analysis):
    r = analysis.broadcast("issue_pattern", issue_payload(), 0.7, urgency="high")
    assert r.status_code == 201
    body = r.json()
    item = body["item"]
    for key in (
        "id",
        "knowledge_type",
        "source",
        "subject",
        "claim",
        "payload",
        "confidence",
        "urgency",
        "status",
        "created_at",
        "freshness",
    ):
        assert key in item
    assert item["source"] == "analysis"
    assert item["subject"] == "long_function | app/x.py::f"
    assert item["claim"] == "high"
    assert item["urgency"] == "high"
    assert item["status"] == "active"
    assert body["conflicts"] == [] and body["outcome"] == "created"


def test_broadcast_writes_event_in_log(analysis):
    r = analysis.broadcast("issue_pattern", issue_payload())
    event = Event.objects.get()
    assert event.kind == "knowledge_broadcast"
    assert event.item_id == r.json()["item"]["id"]
    assert event.data["item"]["claim"] == "high"


def test_worker_broadcasts_only_as_itself(analysis, think):
    r = analysis.broadcast("issue_pattern", issue_payload(), source="think")
    assert r.status_code == 403
    assert "only as itself" in r.json()["detail"]
    assert not KnowledgeItem.objects.exists() and not Event.objects.exists()


def test_staff_broadcasts_naming_a_source(staff_client, analysis):
    body = {
        "knowledge_type": "issue_pattern",
        "payload": issue_payload(),
        "confidence": 0.5,
        "source": "analysis",
    }
    r = staff_client.post("/api/knowledge/broadcast", body, format="json")
    assert r.status_code == 201
    assert r.json()["item"]["source"] == "analysis"
    body.pop("source")
    r = staff_client.post("/api/knowledge/broadcast", body, format="json")
    assert r.status_code == 400 and "source" in r.json()["errors"]


def test_same_source_same_claim_refreshes_instead_of_duplicating(analysis):
    first = analysis.broadcast("issue_pattern", issue_payload(), 0.6).json()["item"]
    r = analysis.broadcast("issue_pattern", issue_payload(), 0.9)
    assert r.status_code == 200
    again = r.json()
    assert again["outcome"] == "refreshed"
    assert again["item"]["id"] == first["id"]
    assert again["item"]["confidence"] == 0.9
    assert again["item"]["refresh_count"] == 1
    assert KnowledgeItem.objects.count() == 1


def test_same_source_new_claim_supersedes_its_own_item(analysis):
    first = analysis.broadcast("issue_pattern", issue_payload(severity="low")).json()["item"]
    r = analysis.broadcast("issue_pattern", issue_payload(severity="high"))
    assert r.status_code == 201 and r.json()["outcome"] == "revised"
    old = KnowledgeItem.objects.get(pk=first["id"])
    assert old.status == "superseded"
    assert old.superseded_by_id == r.json()["item"]["id"]


def test_idempotency_key_retry_returns_first_result(analysis):
    body = dict(idempotency_key="abc-1")
    first = analysis.broadcast("risk_pattern", risk_payload(), 0.8, **body)
    retry = analysis.broadcast("risk_pattern", risk_payload(), 0.8, **body)
    assert first.status_code == 201
    assert retry.status_code == 200
    assert retry.json()["item"]["id"] == first.json()["item"]["id"]
    assert retry.json()["replayed"] is True
    assert KnowledgeItem.objects.count() == 1
    assert Event.objects.count() == 1


def test_idempotency_key_reused_with_other_body_is_422(analysis):
    analysis.broadcast("risk_pattern", risk_payload(), 0.8, idempotency_key="k")
    r = analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.8, idempotency_key="k")
    assert r.status_code == 422
    assert "idempotency_key" in r.json()["errors"]
    assert KnowledgeItem.objects.count() == 1


def test_idempotency_keys_are_per_worker(analysis, think):
    a = analysis.broadcast("risk_pattern", risk_payload(), idempotency_key="same")
    t = think.broadcast("risk_pattern", risk_payload(), idempotency_key="same")
    assert a.status_code == t.status_code == 201
    assert IdempotencyRecord.objects.count() == 2


def test_targeted_broadcast_needs_known_workers(analysis, think):
    r = analysis.broadcast("issue_pattern", issue_payload(), targets=["think", "ghost"])
    assert r.status_code == 400
    assert "ghost" in r.json()["errors"]["targets"][0]
    assert not KnowledgeItem.objects.exists()
    r = analysis.broadcast("issue_pattern", issue_payload(), targets=["think"])
    assert r.status_code == 201 and r.json()["item"]["targets"] == ["think"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"knowledge_type": "nope", "payload": {}, "confidence": 0.5}, "knowledge_type"),
        (
            {"knowledge_type": "issue_pattern", "payload": {"rule": "x"}, "confidence": 0.5},
            "payload.location",
        ),
        (
            {
                "knowledge_type": "issue_pattern",
                "payload": issue_payload(severity="huge"),
                "confidence": 0.5,
            },
            "payload.severity",
        ),
        (
            {"knowledge_type": "issue_pattern", "payload": issue_payload(), "confidence": 1.5},
            "confidence",
        ),
        (
            {"knowledge_type": "issue_pattern", "payload": issue_payload(), "confidence": -0.1},
            "confidence",
        ),
        (
            {"knowledge_type": "issue_pattern", "payload": issue_payload(), "confidence": "high"},
            "confidence",
        ),
        ({"knowledge_type": "issue_pattern", "payload": issue_payload()}, "confidence"),
        (
            {
                "knowledge_type": "issue_pattern",
                "payload": issue_payload(),
                "confidence": 0.5,
                "urgency": "asap",
            },
            "urgency",
        ),
        ({"knowledge_type": "issue_pattern", "payload": "text", "confidence": 0.5}, "payload"),
        (
            {
                "knowledge_type": "risk_pattern",
                "payload": {"pattern": "p", "risk_level": "high", "risk_score": 3},
                "confidence": 0.5,
            },
            "payload.risk_score",
        ),
        (
            {
                "knowledge_type": "issue_pattern",
                "payload": issue_payload(),
                "confidence": 0.5,
                "observed_at": "yesterday",
            },
            "observed_at",
        ),
        (
            {
                "knowledge_type": "issue_pattern",
                "payload": issue_payload(location="a\x00b"),
                "confidence": 0.5,
            },
            "payload",
        ),
        (
            {
                "knowledge_type": "issue_pattern",
                "payload": {**issue_payload(), "k\x00": 1},
                "confidence": 0.5,
            },
            "payload",
        ),
        (
            {
                "knowledge_type": "issue_pattern",
                "payload": issue_payload(),
                "confidence": 0.5,
                "idempotency_key": "a\x00",
            },
            "idempotency_key",
        ),
    ],
)
def test_bad_broadcast_is_400_naming_the_field_and_writes_nothing(analysis, body, field):
    r = analysis.client.post("/api/knowledge/broadcast", body, format="json")
    assert r.status_code == 400, r.content
    data = r.json()
    assert field in data["errors"], data
    assert field in data["detail"]
    assert not KnowledgeItem.objects.exists() and not Event.objects.exists()


def test_malformed_json_is_400(analysis):
    r = analysis.client.post(
        "/api/knowledge/broadcast", data='{"knowledge_type": ', content_type="application/json"
    )
    assert r.status_code == 400
    assert "JSON" in r.json()["detail"]


def test_oversized_body_is_413(analysis, settings):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "max_body_bytes": 2000}
    payload = issue_payload()
    payload["note"] = "x" * 5000
    r = analysis.broadcast("issue_pattern", payload)
    assert r.status_code == 413
    assert not KnowledgeItem.objects.exists()


def test_oversized_payload_is_400(analysis, settings):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "max_payload_bytes": 500}
    payload = issue_payload()
    payload["note"] = "x" * 600
    r = analysis.broadcast("issue_pattern", payload)
    assert r.status_code == 400 and "payload" in r.json()["errors"]


def test_missing_or_wrong_token(anon_client, db):
    body = {"knowledge_type": "issue_pattern", "payload": issue_payload(), "confidence": 0.5}
    assert anon_client.post("/api/knowledge/broadcast", body, format="json").status_code in (
        401,
        403,
    )
    anon_client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    r = anon_client.post("/api/knowledge/broadcast", body, format="json")
    assert r.status_code == 401
    assert "token" in r.json()["detail"].lower()


def test_observed_at_in_future_beyond_tolerance_is_rejected(analysis):
    future = (timezone.now() + timedelta(minutes=10)).isoformat()
    r = analysis.broadcast("issue_pattern", issue_payload(), observed_at=future)
    assert r.status_code == 400 and "future" in r.json()["errors"]["observed_at"][0]


def test_observed_at_within_skew_is_clamped_to_now(analysis):
    soon = (timezone.now() + timedelta(seconds=20)).isoformat()
    r = analysis.broadcast("issue_pattern", issue_payload(), observed_at=soon)
    assert r.status_code == 201
    assert r.json()["item"]["freshness"] == pytest.approx(1.0, abs=1e-4)
    item = KnowledgeItem.objects.get()
    assert item.observed_at <= timezone.now()


def test_observed_in_the_past_is_less_fresh(analysis):
    # issue_pattern decays over 5 days: observed 5 days ago -> freshness e^-1
    past = (timezone.now() - timedelta(days=5)).isoformat()
    r = analysis.broadcast("issue_pattern", issue_payload(), observed_at=past)
    assert r.json()["item"]["freshness"] == pytest.approx(0.3679, abs=1e-3)


def test_bulk_reports_each_item_and_stores_only_valid_ones(analysis):
    items = [
        {
            "knowledge_type": "issue_pattern",
            "payload": issue_payload(location="a.py::f"),
            "confidence": 0.5,
        },
        {"knowledge_type": "issue_pattern", "payload": {"rule": "x"}, "confidence": 0.5},
        {"knowledge_type": "risk_pattern", "payload": risk_payload(), "confidence": 2},
        {
            "knowledge_type": "risk_pattern",
            "payload": risk_payload(),
            "confidence": 0.9,
            "idempotency_key": "b-1",
        },
    ]
    r = analysis.client.post("/api/knowledge/broadcast/bulk", {"items": items}, format="json")
    assert r.status_code == 200
    body = r.json()
    assert body["stored"] == 2 and body["rejected"] == 2
    statuses = [res["status"] for res in body["results"]]
    assert statuses == [201, 400, 400, 201]
    assert "payload.location" in body["results"][1]["errors"]
    assert "confidence" in body["results"][2]["errors"]
    assert KnowledgeItem.objects.count() == 2
    assert Event.objects.count() == 2
    again = analysis.client.post(
        "/api/knowledge/broadcast/bulk", {"items": items[3:]}, format="json"
    ).json()
    assert again["results"][0]["status"] == 200 and again["results"][0]["result"]["replayed"]


def test_bulk_envelope_errors(analysis, settings):
    assert (
        analysis.client.post(
            "/api/knowledge/broadcast/bulk", {"items": []}, format="json"
        ).status_code
        == 400
    )
    assert (
        analysis.client.post(
            "/api/knowledge/broadcast/bulk", {"nope": 1}, format="json"
        ).status_code
        == 400
    )
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "max_bulk_items": 2}
    items = [
        {"knowledge_type": "risk_pattern", "payload": risk_payload(f"p{i}"), "confidence": 0.5}
        for i in range(3)
    ]
    r = analysis.client.post("/api/knowledge/broadcast/bulk", {"items": items}, format="json")
    assert r.status_code == 400 and "items" in r.json()["errors"]
    assert not KnowledgeItem.objects.exists()


def test_types_endpoint_lists_registry(analysis):
    r = analysis.client.get("/api/knowledge/types")
    assert r.status_code == 200
    types = {t["name"]: t for t in r.json()["results"]}
    assert len(types) == 10
    assert types["context_enrichment"]["decay_seconds"] == 6 * 3600
    assert types["issue_pattern"]["subject_fields"] == ["rule", "location"]
    assert types["issue_pattern"]["claim_fields"] == ["severity"]
    assert "severity" in types["issue_pattern"]["schema"]["required"]
    assert types["learned_pattern"]["interested"] == ["think", "analysis", "dream"]
