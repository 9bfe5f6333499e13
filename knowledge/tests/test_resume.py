"""The one resume rule (knowledge/resume.py) on every path, with a log pruned past the client.

Before the rule lived in one module, the four copies disagreed: ``GET events`` replayed from the
prune horizon, the socket jumped to the top, the inbox restarted at the horizon (or 0 after a
reset). Now every path answers ``recovered: false`` and ``position`` = the log's top, and the
next event after it is delivered normally.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.utils import timezone

from config.asgi import application
from conftest import issue_payload
from knowledge import actions
from knowledge.events import LogPosition
from knowledge.models import Event
from knowledge.resume import first_position, resume
from knowledge.tests.daphne_server import DaphneServer
from kx_sdk.live import LiveFeed
from workers.inprocess import InProcessTransport

LOG = LogPosition(epoch="e1", top=50, pruned_through=20)


def test_rule_live_only_recoverable_and_not():
    assert (resume(None, None, LOG).position, resume(None, None, LOG).recovered) == (50, True)
    assert (resume(30, "e1", LOG).position, resume(30, "e1", LOG).recovered) == (30, True)
    assert (resume(20, None, LOG).position, resume(20, None, LOG).recovered) == (20, True)
    for since, epoch in ((19, "e1"), (0, None), (51, "e1"), (30, "e0")):
        answer = resume(since, epoch, LOG)
        assert (answer.position, answer.recovered) == (50, False), (since, epoch)


def test_a_new_inbox_never_starts_above_the_logs_top():
    """The newest event written before a worker existed may stand above the horizon (with
    snapshot ordering a transaction that drew a smaller seq may still be in flight): the
    inbox starts at the top then, so that seq is delivered once it commits."""
    assert first_position("now", LOG, at_creation=60) == 50
    assert first_position("now", LOG, at_creation=40) == 40
    assert first_position("beginning", LOG, at_creation=60) == 20


def _broadcast(persona, location):
    r = persona.broadcast("issue_pattern", issue_payload(location=location))
    assert r.status_code == 201, r.json()
    return Event.objects.order_by("-seq").values_list("seq", flat=True).first()


@pytest.fixture
def pruned(analysis, think, dream):
    """think and dream have seen s1; the log is then pruned through s2; s3 is the top."""
    s1 = _broadcast(analysis, "a.py::f")
    for persona in (think, dream):
        persona.client.post(
            f"/api/knowledge/receive/{persona.name}/ack", {"seq": s1}, format="json"
        )
    s2 = _broadcast(analysis, "b.py::f")
    Event.objects.filter(seq__lte=s2).update(created_at=timezone.now() - timedelta(days=90))
    s3 = _broadcast(analysis, "c.py::f")
    assert actions.do_prune_events(timezone.now() - timedelta(days=30)) >= 2
    epoch = think.client.get("/api/knowledge/events").json()["epoch"]
    return {"s1": s1, "s3": s3, "epoch": epoch}


@pytest.mark.django_db(transaction=True)  # readers see committed events only
def test_rest_poll_and_inbox_give_the_same_answer(pruned, think, dream, analysis):
    s1, s3 = pruned["s1"], pruned["s3"]
    poll = think.client.get("/api/knowledge/events", {"since": s1, "epoch": pruned["epoch"]}).json()
    inbox = think.client.get("/api/knowledge/receive/think").json()
    sdk_inbox = InProcessTransport(dream.worker).receive()  # the SDK's in-process inbox
    for answer in (poll, inbox, sdk_inbox):
        assert answer["recovered"] is False and answer["results"] == []
        assert answer["position"] == s3
    # ... and the client now stands at s3: the next event is delivered, recovered again.
    s4 = _broadcast(analysis, "d.py::f")
    poll = think.client.get("/api/knowledge/events", {"since": s3, "epoch": pruned["epoch"]}).json()
    inbox = think.client.get("/api/knowledge/receive/think").json()
    for answer in (poll, inbox):
        assert answer["recovered"] is True and [m["seq"] for m in answer["results"]] == [s4]


@pytest.mark.django_db(transaction=True)
async def test_socket_gives_the_same_answer(pruned, think, analysis):
    comm = WebsocketCommunicator(application, f"/ws/knowledge/?token={think.token}")
    assert (await comm.connect(timeout=5))[0]
    await comm.send_json_to(
        {"action": "subscribe", "since": pruned["s1"], "epoch": pruned["epoch"]}
    )
    reply = await comm.receive_json_from(timeout=5)
    assert reply["type"] == "subscribed"
    assert reply["recovered"] is False and reply["position"] == pruned["s3"]
    assert await comm.receive_nothing(timeout=0.5)
    s4 = await database_sync_to_async(_broadcast)(analysis, "d.py::f")
    while (msg := await comm.receive_json_from(timeout=5))["type"] != "event":
        pass
    assert msg["seq"] == s4
    await comm.disconnect()
    await database_sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("use_websocket", [True, False], ids=["socket", "poll"])
async def test_sdk_obeys_the_servers_answer(pruned, think, analysis, use_websocket):
    server = await asyncio.to_thread(DaphneServer().start)
    resets = []
    feed = LiveFeed(
        server.url,
        think.token,
        since=pruned["s1"],
        epoch=pruned["epoch"],
        on_reset=resets.append,
        use_websocket=use_websocket,
        poll_wait=1,
    )
    try:
        feed.start()
        for _ in range(200):
            if resets:
                break
            await asyncio.sleep(0.05)
        assert resets and resets[0]["reason"] == "not_recovered"
        assert feed.last_seq == pruned["s3"]
        s4 = await database_sync_to_async(_broadcast)(analysis, "d.py::f")
        event = await asyncio.wait_for(feed.__anext__(), 15)
        assert event["seq"] == s4
    finally:
        await feed.close()
        await asyncio.to_thread(server.stop)
        await database_sync_to_async(connections.close_all)()
