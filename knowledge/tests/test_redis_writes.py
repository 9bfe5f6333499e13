"""A broadcast's after-commit Redis writes (the cache's type tokens, the relays' wake-up
PUBLISH) in one round trip when they go to the same Redis (knowledge/redis_writes.py).

Round trips are counted at redis-py's socket edge (``send_packed_command``: a pipeline is
one call, a single command one call); the writes themselves are checked in Redis: the
token changed, a subscriber got the wake-up."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from redis.connection import AbstractConnection

import knowledge.relay  # noqa: F401 - registers the wake hook that publishes
from conftest import issue_payload
from knowledge import cache as knowledge_cache
from knowledge import wakeup
from knowledge.actions import BroadcastInput, do_broadcast
from knowledge.models import Event
from knowledge.tests.test_wakeup import needs_redis_server, redis_servers  # noqa: F401 - fixture

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (REDIS_URL)"),
]

TOKEN = knowledge_cache.TOKEN_KEY.format("issue_pattern").encode()


@pytest.fixture
def packets(monkeypatch):
    """Every packet redis-py sends (bytes), in order."""
    sent: list[bytes] = []
    send = AbstractConnection.send_packed_command

    def recording(self, command, check_health=True):
        sent.append(command if isinstance(command, bytes) else b"".join(command))
        return send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", recording)
    return sent


def subscriber(url: str):
    pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(wakeup.channel())
    assert pubsub.get_message(timeout=5) is None  # the subscription's confirmation
    return pubsub


def broadcast(persona, location: str):
    data = BroadcastInput("issue_pattern", issue_payload(location=location), 0.7)
    return do_broadcast(persona.worker, data)


def token_now() -> str | None:
    return knowledge_cache.cache.get(knowledge_cache.TOKEN_KEY.format("issue_pattern"))


def test_the_tokens_and_the_wake_up_go_in_one_round_trip_tokens_first(analysis, packets):
    # Subscribed on another database of the same server: PUBLISH ignores the database.
    listener = subscriber(settings.REDIS_URL.rsplit("/", 1)[0] + "/9")
    broadcast(analysis, "warm/up.py::f")
    listener.get_message(timeout=5)
    before = token_now()
    packets.clear()

    result = broadcast(analysis, "a.py::f")

    mine = [p for p in packets if TOKEN in p or b"PUBLISH" in p]
    assert len(mine) == 1, mine  # before: a MULTI/SET/EXEC packet, then a PUBLISH one
    assert mine[0].index(TOKEN) < mine[0].index(b"PUBLISH")
    assert token_now() not in (None, before)
    message = listener.get_message(timeout=5)
    assert message is not None
    assert int(message["data"]) == Event.objects.get(item_id=result.item.pk).seq
    listener.close()


@needs_redis_server
def test_a_wake_channel_on_another_server_gets_its_own_round_trip(
    analysis,
    packets,
    redis_servers,  # noqa: F811 - fixture
    settings,
):
    layer_url = redis_servers()
    layers = {**settings.CHANNEL_LAYERS}
    layers["default"] = {
        **layers["default"],
        "CONFIG": {**layers["default"]["CONFIG"], "hosts": [layer_url]},
    }
    settings.CHANNEL_LAYERS = layers
    listener = subscriber(layer_url)
    before = token_now()
    packets.clear()

    broadcast(analysis, "a.py::f")

    tokens = [p for p in packets if TOKEN in p]
    wakes = [p for p in packets if b"PUBLISH" in p]
    assert len(tokens) == 1 and len(wakes) == 1 and tokens != wakes
    assert token_now() not in (None, before)
    assert listener.get_message(timeout=5) is not None
    listener.close()
