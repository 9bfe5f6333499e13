"""GET events (long poll) and its interplay with the WebSocket feed and POST subscribe."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.db import transaction

from conftest import PollInThread, issue_payload, risk_payload, wait_until_long_poll_parked
from knowledge.events import publish_event
from knowledge.tests.test_consumers import (  # noqa: F401 (autouse fixture)
    _close_async_db_connections,
    connect,
    next_events,
    subscribe,
)

pytestmark = [pytest.mark.django_db(transaction=True)]


def publish(kind="knowledge_broadcast", **kw) -> int:
    with transaction.atomic():
        return publish_event(kind, {"note": kind}, **kw).seq


def poll(persona, **params):
    r = persona.client.get("/api/knowledge/events", params)
    assert r.status_code == 200, r.json()
    return r.json()


def test_live_only_poll_answers_a_top_to_resume_from(think):
    publish()
    first = poll(think)
    assert first["results"] == [] and first["recovered"] is True
    seq = publish()
    nxt = poll(think, since=first["top"])
    assert [e["seq"] for e in nxt["results"]] == [seq]
    assert nxt["next"] == nxt["top"] == seq and nxt["epoch"] == first["epoch"]


def test_long_poll_returns_as_soon_as_an_event_commits(think, settings):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "long_poll_max_wait": 600}
    top = poll(think)["top"]
    waiting = PollInThread(think, {"since": top, "wait": 600})
    assert wait_until_long_poll_parked()
    seq = publish()
    assert waiting.done(), "the long poll was not woken by the event"
    answer = waiting.response.json()
    assert [e["seq"] for e in answer["results"]] == [seq]


def test_long_poll_with_nothing_new_waits_then_answers_empty(think):
    top = poll(think)["top"]
    waiting = PollInThread(think, {"since": top, "wait": 1})
    assert wait_until_long_poll_parked(), "the poll answered without waiting"
    assert waiting.done()
    answer = waiting.response.json()
    assert answer["results"] == [] and answer["top"] == top


def test_poll_filters_and_targeted_visibility(think, analysis, dream):
    analysis.broadcast("issue_pattern", issue_payload(), targets=["think"])
    analysis.broadcast("risk_pattern", risk_payload())
    seen_by_dream = poll(dream, since=0)["results"]
    assert [e["data"]["item"]["knowledge_type"] for e in seen_by_dream] == ["risk_pattern"]
    seen_by_think = poll(think, since=0, types="issue_pattern")["results"]
    assert [e["data"]["item"]["knowledge_type"] for e in seen_by_think] == ["issue_pattern"]
    r = think.client.get("/api/knowledge/events", {"types": "nope"})
    assert r.status_code == 400 and "types" in r.json()["errors"]


def test_poll_past_the_pruned_log_says_recovered_false(think):
    from knowledge.models import LogState

    seqs = [publish() for _ in range(3)]
    LogState.objects.update_or_create(id=1, defaults={"pruned_through": seqs[1]})
    answer = poll(think, since=seqs[0])
    assert answer["recovered"] is False and answer["top"] == seqs[-1]


def test_standing_subscription_drives_the_poll_and_the_socket(think, analysis, learning):
    # think is interested in risk_pattern by the registry; muting it via POST unsubscribe
    # removes it from the standing feed, POST subscribe brings it back.
    r = think.client.post("/api/knowledge/unsubscribe", {"types": ["risk_pattern"]}, format="json")
    assert r.status_code == 200, r.json()
    top = poll(think)["top"]
    analysis.broadcast("risk_pattern", risk_payload("muted one"))
    first = poll(think, since=top, standing="true")
    assert first["results"] == [] and first["next"] > top  # filtered out, still advanced
    r = think.client.post("/api/knowledge/subscribe", {"types": ["risk_pattern"]}, format="json")
    assert r.status_code == 200
    analysis.broadcast("risk_pattern", risk_payload("wanted one"))
    got = poll(think, since=first["next"], standing="true")["results"]
    assert [e["data"]["item"]["subject"] for e in got] == ["wanted one"]


async def test_switching_between_socket_and_polling_loses_and_repeats_nothing(think):
    apublish = database_sync_to_async(publish)
    apoll = database_sync_to_async(poll)
    expected, seen = [], []

    expected += [await apublish() for _ in range(3)]
    ws = await connect(think.token)
    await subscribe(ws, since=0)
    seen += [e["seq"] for e in await next_events(ws, 3)]
    await ws.disconnect()  # the socket drops...

    expected += [await apublish() for _ in range(4)]
    answer = await apoll(think, since=seen[-1], limit=2)  # ...the client polls, in pages
    seen += [e["seq"] for e in answer["results"]]
    answer = await apoll(think, since=answer["next"])
    seen += [e["seq"] for e in answer["results"]]

    expected += [await apublish() for _ in range(2)]
    ws = await connect(think.token)  # ...and the socket is back
    reply = await subscribe(ws, since=seen[-1])
    assert reply["recovered"] is True
    seen += [e["seq"] for e in await next_events(ws, 2)]
    expected.append(await apublish())
    seen += [e["seq"] for e in await next_events(ws, 1)]
    assert seen == expected
    assert await ws.receive_nothing(timeout=0.5)
    await ws.disconnect()


async def test_socket_with_standing_filter_follows_post_subscribe(think, analysis):
    from django.conf import settings
    from django.test import override_settings

    post = database_sync_to_async(think.client.post)
    abroadcast = database_sync_to_async(analysis.broadcast)
    await post("/api/knowledge/unsubscribe", {"types": ["risk_pattern"]}, format="json")
    with override_settings(
        KNOWLEDGE_EXCHANGE={**settings.KNOWLEDGE_EXCHANGE, "ws_standing_refresh_seconds": 0.1}
    ):
        ws = await connect(think.token)
        await subscribe(ws, since=None, standing=True)
        await abroadcast("risk_pattern", risk_payload("muted"))
        assert await ws.receive_nothing(timeout=0.5)
        await post("/api/knowledge/subscribe", {"types": ["risk_pattern"]}, format="json")
        import asyncio

        await asyncio.sleep(1.2)  # the relay refreshes standing filters
        await abroadcast("risk_pattern", risk_payload("wanted"))
        [ev] = await next_events(ws, 1)
        assert ev["data"]["item"]["subject"] == "wanted"
        await ws.disconnect()
