"""Private (targeted) items never leak through conflicts, statistics or events (issue 10, #2).

Personas: analysis (C) tells learning (B) something privately; think (A) may not see it.
"""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async

from conflicts.models import Conflict, ConflictItem
from conftest import risk_payload
from knowledge.models import KnowledgeItem
from knowledge.tests.test_consumers import (  # noqa: F401 (autouse fixture)
    _close_async_db_connections,
    connect,
    next_events,
    subscribe,
)

pytestmark = pytest.mark.django_db

SUBJECT = "cache stampede on deploy"


def _item(response) -> dict:
    assert response.status_code == 201, response.json()
    return response.json()


def events_seen_by(persona) -> list[dict]:
    r = persona.client.get("/api/knowledge/events", {"since": 0})
    assert r.status_code == 200, r.json()
    return r.json()["results"]


@pytest.fixture
def secret(analysis, learning):
    """analysis tells only learning that the risk is high."""
    body = _item(
        analysis.broadcast("risk_pattern", risk_payload(SUBJECT, "high"), 0.9, targets=["learning"])
    )
    return body["item"]


@pytest.mark.django_db(transaction=True)  # reads the event feed: committed events only
def test_a_public_broadcast_against_a_private_item_reveals_nothing(secret, think, learning):
    # think gets 404 for the private item...
    assert think.client.get(f"/api/knowledge/items/{secret['id']}").status_code == 404
    # ...and contradicting it on the same subject tells think nothing about it.
    body = _item(think.broadcast("risk_pattern", risk_payload(SUBJECT, "low"), 0.9))
    assert body["conflicts"] == []
    assert body["item"]["status"] == "active" and body["item"]["superseded_by"] is None
    assert think.client.get("/api/knowledge/conflicts").json()["results"] == []
    stats = think.client.get("/api/knowledge/resolution-stats").json()
    assert stats["total"] == 0
    seen = events_seen_by(think)
    assert [(e["event"], e["data"]["item"]["id"]) for e in seen] == [
        ("knowledge_broadcast", body["item"]["id"])
    ]
    assert '"high"' not in json.dumps(seen)
    # The private item is untouched, and its own audience sees no conflict made of it either.
    assert learning.client.get(f"/api/knowledge/items/{secret['id']}").json()["status"] == "active"


@pytest.fixture
def private_conflict(secret, analysis, learning):
    """learning answers analysis privately with another claim, then flags the two."""
    reply = _item(
        learning.broadcast("risk_pattern", risk_payload(SUBJECT, "low"), 0.7, targets=["analysis"])
    )["item"]
    r = learning.client.post(
        "/api/knowledge/conflicts/flag",
        {"items": [secret["id"], reply["id"]], "reason": "we disagree"},
        format="json",
    )
    assert r.status_code == 201, r.json()
    return {"id": r.json()["id"], "items": [secret["id"], reply["id"]]}


@pytest.mark.django_db(transaction=True)  # reads the event feed: committed events only
def test_a_private_conflict_is_invisible_to_others_through_every_path(
    private_conflict, think, learning, analysis, staff_client
):
    cid = private_conflict["id"]
    # Its audience sees it, with evidence and proposal.
    for persona in (learning, analysis):
        detail = persona.client.get(f"/api/knowledge/conflicts/{cid}")
        assert detail.status_code == 200
        assert sorted(row["item"]["id"] for row in detail.json()["items"]) == sorted(
            private_conflict["items"]
        )
        assert [
            c["id"] for c in persona.client.get("/api/knowledge/conflicts").json()["results"]
        ] == [cid]
    assert staff_client.get(f"/api/knowledge/conflicts/{cid}").status_code == 200

    # think: not in the list, 404 on the detail, not counted anywhere, no event.
    assert think.client.get("/api/knowledge/conflicts").json()["results"] == []
    hidden = think.client.get(f"/api/knowledge/conflicts/{cid}")
    assert hidden.status_code == 404 and "high" not in json.dumps(hidden.json())
    assert think.client.get("/api/knowledge/resolution-stats").json()["total"] == 0
    assert learning.client.get("/api/knowledge/resolution-stats").json()["total"] == 1
    assert staff_client.get("/api/knowledge/resolution-stats").json()["total"] == 1
    think_stats = think.client.get("/api/knowledge/stats").json()
    assert think_stats["conflicts"]["by_status"]["pending_review"] == 0
    assert think_stats["items"]["total"] == 0 and "analysis" not in think_stats["by_source"]
    learning_stats = learning.client.get("/api/knowledge/stats").json()
    assert learning_stats["conflicts"]["by_status"]["pending_review"] == 1
    assert learning_stats["items"]["total"] == 2

    kinds = [e["event"] for e in events_seen_by(think)]
    assert "conflict_detected" not in kinds and kinds == []
    detected = [e for e in events_seen_by(analysis) if e["event"] == "conflict_detected"]
    assert [e["data"]["conflict"]["id"] for e in detected] == [cid]

    # Resolving it tells think nothing either.
    r = staff_client.post(
        "/api/knowledge/resolve", {"conflict": cid, "decision": "accept"}, format="json"
    )
    assert r.status_code == 200, r.json()
    assert events_seen_by(think) == []
    assert "knowledge_resolved" in [e["event"] for e in events_seen_by(learning)]
    assert think.client.get("/api/knowledge/resolution-stats").json()["by_strategy"] == {}


def test_flagging_items_with_different_audiences_is_refused(secret, learning, think):
    public = _item(think.broadcast("risk_pattern", risk_payload(SUBJECT, "low"), 0.9))["item"]
    r = learning.client.post(
        "/api/knowledge/conflicts/flag", {"items": [secret["id"], public["id"]]}, format="json"
    )
    assert r.status_code == 400 and "items" in r.json()["errors"]
    assert Conflict.objects.count() == 0


def test_a_conflict_with_any_hidden_item_is_hidden_whole(secret, think, analysis):
    """Defence in depth for rows made before the audience rule: one hidden link hides all."""
    a = _item(think.broadcast("risk_pattern", risk_payload("other", "low"), 0.8))["item"]
    b = _item(analysis.broadcast("risk_pattern", risk_payload("other", "high"), 0.8))
    [cid] = b["conflicts"]
    assert [c["id"] for c in think.client.get("/api/knowledge/conflicts").json()["results"]] == [
        cid
    ]
    ConflictItem.objects.create(conflict_id=cid, item_id=secret["id"], role="existing")
    assert think.client.get("/api/knowledge/conflicts").json()["results"] == []
    assert think.client.get(f"/api/knowledge/conflicts/{cid}").status_code == 404
    assert think.client.get("/api/knowledge/resolution-stats").json()["total"] == 0
    assert a["id"] in analysis.client.get(f"/api/knowledge/conflicts/{cid}").json()["item_ids"]


@pytest.mark.django_db(transaction=True)  # reads the event feed: committed events only
def test_validating_a_private_item_publishes_to_its_audience_only(secret, learning, think):
    r = learning.client.post(
        "/api/knowledge/validate", {"item": secret["id"], "verdict": "confirmed"}, format="json"
    )
    assert r.status_code == 200, r.json()
    assert [e["event"] for e in events_seen_by(think)] == []
    assert "knowledge_validated" in [e["event"] for e in events_seen_by(learning)]


@pytest.mark.django_db(transaction=True)
async def test_the_websocket_feed_applies_the_same_rule(secret, think, learning, analysis):
    think_ws = await connect(think.token)
    learning_ws = await connect(learning.token)
    await subscribe(think_ws, since=0)
    await subscribe(learning_ws, since=0)

    @database_sync_to_async
    def flag_privately():
        reply = _item(
            learning.broadcast(
                "risk_pattern", risk_payload(SUBJECT, "low"), 0.7, targets=["analysis"]
            )
        )["item"]
        r = learning.client.post(
            "/api/knowledge/conflicts/flag", {"items": [secret["id"], reply["id"]]}, format="json"
        )
        assert r.status_code == 201, r.json()
        public = _item(think.broadcast("risk_pattern", risk_payload("marker", "low"), 0.5))
        return r.json()["id"], public["item"]["id"]

    cid, marker = await flag_privately()
    # learning hears the secret, its reply, the conflict and the marker; think the marker only.
    got = await next_events(learning_ws, 4)
    assert [e["event"] for e in got] == [
        "knowledge_broadcast",
        "knowledge_broadcast",
        "conflict_detected",
        "knowledge_broadcast",
    ]
    assert got[2]["data"]["conflict"]["id"] == cid
    [only] = await next_events(think_ws, 1)
    assert only["data"]["item"]["id"] == marker
    assert await think_ws.receive_nothing(timeout=0.5)
    for c in (think_ws, learning_ws):
        await c.disconnect()


def test_a_private_broadcast_never_rewrites_or_supersedes_a_public_item(analysis, learning, think):
    public = _item(analysis.broadcast("risk_pattern", risk_payload(SUBJECT, "high"), 0.6))["item"]
    # Same claim, privately, with another confidence: a new private item, not a refresh.
    same = analysis.broadcast(
        "risk_pattern", risk_payload(SUBJECT, "high"), 0.95, targets=["learning"]
    )
    assert same.status_code == 201 and same.json()["item"]["id"] != public["id"]
    # Another claim, privately: the public item is not revised (superseded by a hidden item).
    other = _item(
        analysis.broadcast("risk_pattern", risk_payload(SUBJECT, "low"), 0.9, targets=["learning"])
    )
    # (it revises the private item of the same audience instead)
    assert other["outcome"] == "revised"
    assert KnowledgeItem.objects.get(pk=same.json()["item"]["id"]).status == "superseded"
    seen = think.client.get(f"/api/knowledge/items/{public['id']}").json()
    assert seen["status"] == "active" and seen["superseded_by"] is None
    assert seen["confidence"] == 0.6


def test_the_worker_list_does_not_count_others_private_items(secret, think, analysis, staff_client):
    rows = {w["name"]: w for w in think.client.get("/api/workers/").json()["results"]}
    assert rows["analysis"]["broadcast_count"] is None
    assert rows["think"]["broadcast_count"] == 0
    staff_rows = {w["name"]: w for w in staff_client.get("/api/workers/").json()["results"]}
    assert staff_rows["analysis"]["broadcast_count"] == 1


@pytest.mark.django_db(transaction=True)  # reads the event feed: committed events only
def test_every_transition_of_a_private_conflict_stays_with_its_audience(
    private_conflict, think, learning, analysis, staff_client
):
    """The conflict events of issue 15 (opened, pending_review on request, dismissed) carry
    the conflict's audience like the others: its workers see each one, think none."""
    from knowledge.models import Event

    cid = private_conflict["id"]
    r = learning.client.post(
        f"/api/knowledge/conflicts/{cid}/request-resolution", {}, format="json"
    )
    assert r.status_code == 200, r.json()
    r = staff_client.post(
        "/api/knowledge/resolve", {"conflict": cid, "decision": "dismiss"}, format="json"
    )
    assert r.status_code == 200, r.json()
    rows = Event.objects.filter(
        kind__in=["conflict_detected", "conflict_updated", "knowledge_resolved"]
    )
    assert rows.count() >= 2
    for row in rows:
        assert row.is_targeted and sorted(row.targets) == ["analysis", "learning"], row.data
    for persona in (learning, analysis):
        transitions = [
            e["data"]["transition"]
            for e in events_seen_by(persona)
            if e["event"] != "knowledge_broadcast"
        ]
        assert transitions[0] == "opened" and transitions[-1] == "dismissed"
    assert events_seen_by(think) == []
    assert "high" not in json.dumps(events_seen_by(think))
