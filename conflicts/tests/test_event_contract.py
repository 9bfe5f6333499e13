"""The conflict event contract (docs/api.md, "Conflict events"; issue 15, item 3), read the way
a client reads it: through ``GET events``.

- An item's ``knowledge_broadcast`` comes before every conflict event its storing caused.
- Every transition is an event carrying the conflict's state as committed (status, proposal,
  probability, version): opened, pending_review, proposal_changed / items_changed, resolved,
  dismissed.
- ``version`` changes only when what a reviewer sees changes; a refresh loop leaves it, so a
  decision sent with the version read before the loop succeeds.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.conf import settings
from django.test import override_settings

from conflicts.models import Conflict, SourceTrust
from conftest import Persona, risk_payload

# Read the way a client reads: committed events only (docs/decisions/event-log-ordering.md,
# "The test-time rule").
pytestmark = pytest.mark.django_db(transaction=True)

CONFLICT_KINDS = ("conflict_detected", "conflict_updated", "knowledge_resolved")


def ke(**overrides):
    return override_settings(KNOWLEDGE_EXCHANGE={**settings.KNOWLEDGE_EXCHANGE, **overrides})


def feed(persona, since: int = 0) -> list[dict]:
    r = persona.client.get("/api/knowledge/events", {"since": since})
    assert r.status_code == 200, r.json()
    return r.json()["results"]


def conflict_events(persona, since: int = 0) -> list[dict]:
    return [e for e in feed(persona, since) if e["event"] in CONFLICT_KINDS]


def created(response) -> dict:
    assert response.status_code in (200, 201), response.json()
    return response.json()


def test_the_broadcast_that_opens_a_conflict_comes_before_the_conflict_event(think, analysis):
    created(think.broadcast("risk_pattern", risk_payload(level="high"), 0.8))
    body = created(analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.8))
    [cid] = body["conflicts"]
    events = feed(think)
    kinds = [(e["event"], e["data"].get("item", {}).get("id")) for e in events]
    assert kinds[1:] == [("knowledge_broadcast", body["item"]["id"]), ("conflict_detected", None)]
    broadcast, detected = events[1], events[2]
    assert broadcast["seq"] < detected["seq"]
    # The broadcast already names the conflict it raised.
    assert broadcast["data"]["conflicts"] == [cid]
    # "opened" carries the state after the engine ran, not the row as first inserted.
    conflict = Conflict.objects.get(pk=cid)
    state = detected["data"]["conflict"]
    assert detected["data"]["transition"] == "opened"
    assert state["status"] == conflict.status == "pending_review"
    assert state["version"] == conflict.version
    assert state["proposed_claim"] == conflict.proposed_claim in ("high", "low")
    assert state["probability"] == conflict.proposal["scores"][conflict.proposed_claim]
    assert state["proposal"]["winner_claim"] == conflict.proposed_claim
    assert sorted(state["proposal"]["scores"]) == ["high", "low"]
    assert detected["data"]["item_ids"] == sorted(
        [events[0]["data"]["item"]["id"], body["item"]["id"]]
    )
    assert detected["data"]["workers"] == ["analysis", "think"]


def test_an_auto_resolved_conflict_announces_opened_then_resolved_after_the_broadcast(db):
    sources = [Persona(f"w{i}") for i in range(4)]
    for p in sources[:3]:
        SourceTrust.objects.create(worker=p.worker, knowledge_type="risk_pattern", alpha=40, beta=2)
        created(p.broadcast("risk_pattern", risk_payload(level="high"), 0.9))
    top = feed(sources[3])[-1]["seq"]
    loser = created(sources[3].broadcast("risk_pattern", risk_payload(level="low"), 0.6))
    events = feed(sources[3], since=top)
    assert [e["event"] for e in events] == [
        "knowledge_broadcast",
        "conflict_detected",
        "knowledge_resolved",
    ]
    assert events[0]["data"]["item"]["id"] == loser["item"]["id"]
    assert events[0]["data"]["item"]["status"] == "superseded"
    conflict = Conflict.objects.get()
    for event in events[1:]:
        # Both carry the committed state: nobody is told "open, no proposal" about a
        # conflict that was already settled.
        assert event["data"]["conflict"]["status"] == "auto_resolved"
        assert event["data"]["conflict"]["version"] == conflict.version
        assert event["data"]["conflict"]["proposed_claim"] == "high"
    resolved = events[2]["data"]
    assert resolved["transition"] == "resolved" and resolved["decision"] == "auto"
    assert resolved["superseded_item_ids"] == [loser["item"]["id"]]


def test_a_bulk_publishes_every_broadcast_of_a_run_before_its_conflict_events(think, analysis):
    created(think.broadcast("risk_pattern", risk_payload("a", "high"), 0.8))
    created(think.broadcast("risk_pattern", risk_payload("b", "high"), 0.8))
    r = analysis.client.post(
        "/api/knowledge/broadcast/bulk",
        {
            "items": [
                {
                    "knowledge_type": "risk_pattern",
                    "payload": risk_payload(p, "low"),
                    "confidence": 0.8,
                }
                for p in ("a", "b")
            ]
        },
        format="json",
    )
    assert r.status_code == 200 and r.json()["stored"] == 2, r.json()
    kinds = [e["event"] for e in feed(think)][2:]
    assert kinds == ["knowledge_broadcast"] * 2 + ["conflict_detected"] * 2


def test_moving_to_review_on_request_is_an_event_and_keeps_the_version(think, analysis):
    created(think.broadcast("risk_pattern", risk_payload(level="high"), 0.8))
    with ke(conflict_settle_seconds=3600):
        [cid] = created(analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.8))[
            "conflicts"
        ]
    [opened] = conflict_events(think)
    assert opened["data"]["conflict"]["status"] == "open"
    version = opened["data"]["conflict"]["version"]
    r = analysis.client.post(
        f"/api/knowledge/conflicts/{cid}/request-resolution", {}, format="json"
    )
    assert r.status_code == 200, r.json()
    [update] = conflict_events(think, since=opened["seq"])
    assert update["event"] == "conflict_updated"
    assert update["data"]["transition"] == "pending_review"
    assert update["data"]["requested_by"] == "analysis"
    assert update["data"]["conflict"]["status"] == "pending_review"
    assert update["data"]["conflict"]["version"] == version == Conflict.objects.get().version


def test_a_proposal_that_flips_is_an_event_with_the_new_version(think, analysis, db):
    with ke(conflict_auto_resolve=False):
        created(think.broadcast("risk_pattern", risk_payload(level="high"), 0.8))
        created(analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.8))
        conflict = Conflict.objects.get()
        first = conflict.proposed_claim
        other = "low" if first == "high" else "high"
        seen = conflict_events(think)[-1]["seq"]
        for i in range(4):  # independent voices for the other claim until the engine follows
            created(Persona(f"v{i}").broadcast("risk_pattern", risk_payload(level=other), 0.9))
            conflict.refresh_from_db()
            if conflict.proposed_claim == other:
                break
    assert conflict.proposed_claim == other
    updates = conflict_events(think, since=seen)
    assert updates and all(e["event"] == "conflict_updated" for e in updates)
    # Every version a reviewer may hold was announced; the last event shows the current one.
    assert [e["data"]["transition"] for e in updates][-1] == "proposal_changed"
    assert updates[-1]["data"]["conflict"]["proposed_claim"] == other
    assert updates[-1]["data"]["conflict"]["version"] == conflict.version
    versions = [e["data"]["conflict"]["version"] for e in updates]
    assert versions == sorted(set(versions)), "each update carries a new version"
    # items joining without flipping the proposal are announced as items_changed
    assert {e["data"]["transition"] for e in updates} <= {"items_changed", "proposal_changed"}


def test_a_refresh_loop_leaves_the_version_and_the_reviewers_decision_succeeds(
    think, analysis, staff_client
):
    created(think.broadcast("risk_pattern", risk_payload(level="high"), 0.8))
    [cid] = created(analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.6))["conflicts"]
    # The reviewer reads the conflict, then a worker refreshes its claim every 5 s for 2 min.
    version = staff_client.get(f"/api/knowledge/conflicts/{cid}").json()["version"]
    seen = feed(think)[-1]["seq"]
    start = dt.datetime.now(dt.UTC)
    for step in range(1, 25):
        with time_machine.travel(start + dt.timedelta(seconds=5 * step), tick=False):
            body = created(
                analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.6 + step / 1000)
            )
            assert body["outcome"] == "refreshed" and body["conflicts"] == [cid]
    assert Conflict.objects.get(pk=cid).version == version
    # The refreshes are broadcasts; none is a conflict event.
    assert conflict_events(think, since=seen) == []
    r = staff_client.post(
        "/api/knowledge/resolve",
        {"conflict": cid, "decision": "accept", "version": version},
        format="json",
    )
    assert r.status_code == 200, r.json()
    [resolved] = conflict_events(think, since=seen)
    assert resolved["event"] == "knowledge_resolved"
    assert resolved["data"]["transition"] == "resolved"
    assert resolved["data"]["decision"] == "accept"
    assert resolved["data"]["actor"] == "user:alice"
    assert resolved["data"]["conflict"]["status"] == "resolved"
    assert resolved["data"]["conflict"]["version"] == Conflict.objects.get(pk=cid).version


def test_a_revision_changes_what_the_reviewer_sees_and_the_version(think, analysis, staff_client):
    created(think.broadcast("risk_pattern", risk_payload(level="high"), 0.8))
    [cid] = created(analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.6))["conflicts"]
    version = Conflict.objects.get(pk=cid).version
    # analysis changes its claim: a new item with a new claim takes part
    body = created(analysis.broadcast("risk_pattern", risk_payload(level="critical"), 0.6))
    assert body["outcome"] == "revised" and body["conflicts"] == [cid]
    after = Conflict.objects.get(pk=cid)
    assert after.version > version
    r = staff_client.post(
        "/api/knowledge/resolve",
        {"conflict": cid, "decision": "accept", "version": version},
        format="json",
    )
    assert r.status_code == 409 and "version" in r.json()["errors"]
    [update] = conflict_events(think, since=feed(think)[-2]["seq"])
    assert update["event"] == "conflict_updated"
    assert update["data"]["conflict"]["version"] == after.version
    assert sorted(update["data"]["conflict"]["proposal"]["scores"]) == ["critical", "high"]


def test_dismissing_is_an_event(think, analysis, staff_client):
    created(think.broadcast("risk_pattern", risk_payload(level="high"), 0.8))
    [cid] = created(analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.8))["conflicts"]
    r = staff_client.post(
        "/api/knowledge/resolve",
        {"conflict": cid, "decision": "dismiss", "note": "both true"},
        format="json",
    )
    assert r.status_code == 200, r.json()
    last = conflict_events(analysis)[-1]
    assert last["event"] == "knowledge_resolved"
    assert last["data"]["transition"] == "dismissed"
    assert last["data"]["decision"] == "dismiss" and last["data"]["note"] == "both true"
    assert last["data"]["conflict"]["status"] == "dismissed"
    assert last["data"]["conflict"]["version"] == Conflict.objects.get(pk=cid).version
