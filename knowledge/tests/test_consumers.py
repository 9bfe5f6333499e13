"""The WebSocket feed: auth, filters, resume, recovered=false, slow consumers, visibility."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import override_settings

from config.asgi import application
from conftest import issue_payload, risk_payload
from knowledge.events import publish_event

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
async def _close_async_db_connections():
    # database_sync_to_async runs in asgiref's shared thread; with CONN_MAX_AGE its
    # connection would outlive the test and block dropping the PostgreSQL test database.
    yield
    from django.db import connections

    await database_sync_to_async(connections.close_all)()


def ke(**overrides):
    from django.conf import settings

    return override_settings(KNOWLEDGE_EXCHANGE={**settings.KNOWLEDGE_EXCHANGE, **overrides})


async def connect(token: str | None = None, headers=None):
    path = "/ws/knowledge/" + (f"?token={token}" if token else "")
    comm = WebsocketCommunicator(application, path, headers=headers or [])
    connected, code = await comm.connect(timeout=5)
    assert connected
    return comm


async def subscribe(comm, **msg) -> dict:
    await comm.send_json_to({"action": "subscribe", **msg})
    reply = await comm.receive_json_from(timeout=5)
    assert reply["type"] == "subscribed", reply
    return reply


async def next_events(comm, n: int, timeout: float = 5.0) -> list[dict]:
    """The next n event messages (heartbeats and pongs skipped)."""
    out = []
    while len(out) < n:
        msg = await comm.receive_json_from(timeout=timeout)
        if msg["type"] == "event":
            out.append(msg)
    return out


async def assert_silent(comm, timeout: float = 0.6):
    """Nothing arrives within ``timeout`` (heartbeats are 15 s apart by default)."""
    assert await comm.receive_nothing(timeout=timeout, interval=0.05)


def broadcast(persona, ktype="issue_pattern", payload=None, **extra):
    payload = payload or (issue_payload() if ktype == "issue_pattern" else risk_payload())
    r = persona.broadcast(ktype, payload, **extra)
    assert r.status_code == 201, r.json()
    return r.json()["item"]


abroadcast = database_sync_to_async(broadcast)


@database_sync_to_async
def publish(kind, **kw):
    with transaction.atomic():
        return publish_event(kind, {"note": kind}, **kw).seq


async def test_no_credentials_or_bad_token_closes_4401(db):
    for path in ("/ws/knowledge/", "/ws/knowledge/?token=not-a-token"):
        comm = WebsocketCommunicator(application, path)
        connected, _ = await comm.connect(timeout=5)
        out = await comm.receive_output(timeout=5)
        assert out == {"type": "websocket.close", "code": 4401}
        await comm.wait()


async def test_non_staff_session_is_refused_and_staff_session_is_accepted(django_user_model):
    from django.test import Client

    @database_sync_to_async
    def cookie_for(name, staff):
        user = django_user_model.objects.create_user(
            name, f"{name}@x.org", "pw-123456", is_staff=staff
        )
        c = Client()
        c.force_login(user)
        return f"sessionid={c.cookies['sessionid'].value}".encode()

    bob = await cookie_for("bob", False)
    comm = WebsocketCommunicator(application, "/ws/knowledge/", headers=[(b"cookie", bob)])
    await comm.connect(timeout=5)
    assert (await comm.receive_output(timeout=5))["code"] == 4401

    alice = await cookie_for("alice", True)
    comm = await connect(headers=[(b"cookie", alice)])
    reply = await subscribe(comm, since=None)
    assert reply["recovered"] is True and isinstance(reply["epoch"], str)
    await comm.disconnect()


async def test_subscribe_then_receive_live_broadcast(think, analysis):
    comm = await connect(think.token)
    reply = await subscribe(comm, since=None)
    before = reply["top"]
    item = await abroadcast(analysis)
    [ev] = await next_events(comm, 1)
    assert ev["event"] == "knowledge_broadcast" and ev["seq"] > before
    assert ev["data"]["item"]["id"] == item["id"] and ev["epoch"] == reply["epoch"]
    await comm.send_json_to({"action": "ping"})
    msg = await comm.receive_json_from(timeout=5)
    assert msg == {"type": "pong", "top": ev["seq"]}
    await comm.disconnect()


async def test_filters_on_event_kind_type_and_source(think, analysis, learning):
    comm = await connect(think.token)
    await subscribe(
        comm,
        since=None,
        types=["risk_pattern"],
        sources=["analysis"],
        events=["knowledge_broadcast", "conflict_detected"],
    )
    await abroadcast(analysis, "issue_pattern")  # wrong type
    await abroadcast(
        learning,
        "learned_pattern",
        {"pattern": "p", "effect": "mixed", "success_rate": 0.5, "samples": 3},
    )  # wrong type+source
    await publish(
        "knowledge_resolved", knowledge_type="risk_pattern", source="analysis"
    )  # wrong kind
    wanted = await abroadcast(analysis, "risk_pattern")
    conflict = await publish("conflict_detected", knowledge_type="risk_pattern", source="analysis")
    evs = await next_events(comm, 2)
    assert [e["event"] for e in evs] == ["knowledge_broadcast", "conflict_detected"]
    assert evs[0]["data"]["item"]["id"] == wanted["id"] and evs[1]["seq"] == conflict
    await assert_silent(comm)

    # A second subscribe replaces the whole subscription (left-out keys clear filters).
    await subscribe(comm, since=None, events=["knowledge_resolved"])
    resolved = await publish("knowledge_resolved", knowledge_type="issue_pattern", source="dream")
    await abroadcast(analysis, "risk_pattern", risk_payload("other"))
    [ev] = await next_events(comm, 1)
    assert ev["seq"] == resolved
    await assert_silent(comm)
    await comm.disconnect()


async def test_bad_filters_answer_error_naming_the_field(think):
    comm = await connect(think.token)
    await comm.send_json_to({"action": "subscribe", "types": ["no_such_type"]})
    assert (await comm.receive_json_from(timeout=5)) == {
        "type": "error",
        "message": "types: unknown knowledge type(s): no_such_type",
    }
    await comm.send_json_to({"action": "subscribe", "since": "x"})
    assert (await comm.receive_json_from(timeout=5))["message"].startswith("since:")
    await comm.send_to(text_data="not json")
    assert (await comm.receive_json_from(timeout=5))["type"] == "error"
    await comm.disconnect()


async def test_resume_with_since_replays_exactly_once_in_order_then_live(think, analysis):
    first = await publish("knowledge_broadcast", source="analysis")
    missed = [await publish("knowledge_broadcast", source="analysis") for _ in range(5)]
    comm = await connect(think.token)
    reply = await subscribe(comm, since=first)
    assert reply["recovered"] is True and reply["since"] == first and reply["top"] == missed[-1]
    replay = await next_events(comm, 5)
    assert [e["seq"] for e in replay] == missed
    live = await publish("knowledge_broadcast", source="analysis")
    [ev] = await next_events(comm, 1)
    assert ev["seq"] == live
    await assert_silent(comm)
    await comm.disconnect()


async def test_replay_larger_than_the_queue_is_paced_not_dropped(think):
    seqs = [await publish("knowledge_broadcast", source="analysis") for _ in range(40)]
    with ke(ws_max_queue=10):
        comm = await connect(think.token)
        await subscribe(comm, since=0)
        got = await next_events(comm, 40)
    assert [e["seq"] for e in got] == seqs
    await comm.disconnect()


async def test_unrecoverable_since_says_recovered_false_and_continues_from_top(think):
    from knowledge.models import LogState

    old = [await publish("knowledge_broadcast") for _ in range(3)]

    @database_sync_to_async
    def prune_through(seq):
        LogState.objects.update_or_create(id=1, defaults={"pruned_through": seq})

    await prune_through(old[1])
    comm = await connect(think.token)
    reply = await subscribe(comm, since=old[0])
    assert reply["recovered"] is False and reply["top"] == old[-1]
    await assert_silent(comm)  # nothing at or below top is replayed after a reset
    live = await publish("knowledge_broadcast")
    assert [e["seq"] for e in await next_events(comm, 1)] == [live]

    # A since from the future (the log was restored) or another epoch: not recovered either.
    assert (await subscribe(comm, since=live + 100))["recovered"] is False
    assert (await subscribe(comm, since=live, epoch="another-epoch"))["recovered"] is False
    await comm.disconnect()


async def test_targeted_items_reach_only_their_targets(think, analysis, dream, staff_client):
    think_ws = await connect(think.token)
    dream_ws = await connect(dream.token)
    await subscribe(think_ws, since=None)
    await subscribe(dream_ws, since=None)
    secret = await abroadcast(analysis, "issue_pattern", targets=["think"])
    public = await abroadcast(analysis, "issue_pattern", issue_payload(location="b.py::g"))
    got_think = await next_events(think_ws, 2)
    assert [e["data"]["item"]["id"] for e in got_think] == [secret["id"], public["id"]]
    [got_dream] = await next_events(dream_ws, 1)
    assert got_dream["data"]["item"]["id"] == public["id"]
    await assert_silent(dream_ws)

    # Replaying from the log applies the same rule.
    replay = await connect(dream.token)
    await subscribe(replay, since=got_think[0]["seq"] - 1)
    [ev] = await next_events(replay, 1)
    assert ev["data"]["item"]["id"] == public["id"]
    for c in (think_ws, dream_ws, replay):
        await c.disconnect()


async def test_slow_consumer_is_closed_4008_and_resumes_without_loss(think):
    with ke(ws_max_queue=5):
        comm = await connect(think.token)
        reply = await subscribe(comm, since=None)

        @database_sync_to_async
        def burst(n):
            # One transaction: the relay sees all n in one batch, more than the queue holds.
            with transaction.atomic():
                return [publish_event("knowledge_broadcast", {"i": i}).seq for i in range(n)]

        seqs = await burst(20)
        received, code = [], None
        while code is None:
            out = await comm.receive_output(timeout=5)
            if out["type"] == "websocket.close":
                code = out["code"]
            else:
                msg = json.loads(out["text"])
                if msg["type"] == "event":
                    received.append(msg["seq"])
        assert code == 4008
        assert len(received) < 20
        last = received[-1] if received else reply["top"]
    comm = await connect(think.token)
    await subscribe(comm, since=last)
    rest = await next_events(comm, len([s for s in seqs if s > last]))
    assert received + [e["seq"] for e in rest] == seqs
    await assert_silent(comm)
    await comm.disconnect()


async def test_unsubscribe_stops_delivery(think):
    comm = await connect(think.token)
    await subscribe(comm, since=None)
    await comm.send_json_to({"action": "unsubscribe"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "unsubscribed"
    await publish("knowledge_broadcast")
    await assert_silent(comm)
    await comm.disconnect()


async def test_websocket_disabled_refuses_cleanly_and_polling_still_works(think, analysis):
    with ke(websocket_enabled=False):
        comm = WebsocketCommunicator(application, f"/ws/knowledge/?token={think.token}")
        await comm.connect(timeout=5)
        assert (await comm.receive_output(timeout=5)) == {"type": "websocket.close", "code": 4503}
        item = await abroadcast(analysis)
        r = await database_sync_to_async(think.client.get)("/api/knowledge/events", {"since": 0})
        assert r.status_code == 200
        assert [e["data"]["item"]["id"] for e in r.json()["results"]] == [item["id"]]


async def test_heartbeat_carries_the_connection_position(think):
    with ke(ws_heartbeat_seconds=0.3):
        comm = await connect(think.token)
        reply = await subscribe(comm, since=None)
        seq = await publish("knowledge_broadcast")
        [ev] = await next_events(comm, 1)
        while True:
            msg = await comm.receive_json_from(timeout=5)
            if msg["type"] == "heartbeat":
                break
        assert msg["top"] == ev["seq"] == seq > reply["top"] - 1
        await comm.disconnect()
