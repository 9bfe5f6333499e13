"""The relay against a real server process: kill -9 and restart, polling fallback, and two
daphne processes on one Redis. The SDK's live client (kx_sdk/live.py) is the client."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction

from knowledge.events import publish_event
from knowledge.tests.daphne_server import DaphneServer, post_broadcast
from kx_sdk.live import AuthError, LiveFeed

pytestmark = [pytest.mark.django_db(transaction=True)]


def publish_one(i: int) -> int:
    with transaction.atomic():
        return publish_event("knowledge_broadcast", {"i": i}, source="analysis").seq


apublish = database_sync_to_async(publish_one)


@pytest.fixture
def server():
    servers = []

    def start(**env):
        s = DaphneServer(**env).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(autouse=True)
async def _close_db():
    yield
    from django.db import connections

    await database_sync_to_async(connections.close_all)()
    connections.close_all()


async def collect(feed: LiveFeed, n: int, timeout: float = 20) -> list[int]:
    out = []

    async def run():
        async for ev in feed:
            out.append(ev["seq"])
            if len(out) >= n:
                return

    try:
        await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        pass
    return out


async def test_client_resumes_after_kill_9_without_loss_or_duplicates(think, server):
    srv = server()
    feed = LiveFeed(
        srv.url, think.token, since=None, backoff_base=0.2, backoff_cap=1.0, fallback_after=0
    )
    feed.start()
    while feed.status != "live":
        await asyncio.sleep(0.05)
    expected = [await apublish(i) for i in range(5)]
    got = await collect(feed, 5)
    srv.kill()  # mid-stream: the client sees the socket die
    expected += [await apublish(i) for i in range(5, 15)]  # published while the server is down
    srv.start()
    expected += [await apublish(i) for i in range(15, 20)]
    got += await collect(feed, 15)
    await feed.close()
    assert got == expected
    assert feed.stats["reconnects"] >= 1


async def test_client_falls_back_to_polling_when_the_socket_is_refused(think, server):
    srv = server(KE_WEBSOCKET_ENABLED="false")
    statuses = []
    feed = LiveFeed(
        srv.url,
        think.token,
        since=0,
        fallback_after=2,
        backoff_base=0.05,
        backoff_cap=0.1,
        poll_wait=1,
        on_status=statuses.append,
    )
    expected = [await apublish(i) for i in range(3)]
    got = await collect(feed, 3)
    expected.append(await apublish(3))
    got += await collect(feed, 1)
    await feed.close()
    assert got == expected
    assert "polling" in statuses and "live" not in statuses


async def test_bad_token_stops_the_client(server, db):
    srv = server()
    feed = LiveFeed(srv.url, "wrong-token", fallback_after=0)
    with pytest.raises(AuthError):
        async for _ in feed:
            pass


needs_pg_redis = pytest.mark.skipif(
    not (settings.IS_POSTGRES and settings.REDIS_URL),
    reason="two daphne processes need a shared PostgreSQL and Redis (set DATABASE_URL and REDIS_URL; CI does)",
)


@pytest.mark.postgres
@pytest.mark.redis
@needs_pg_redis
async def test_two_server_processes_on_one_redis(think, analysis, server):
    # Relays poll the log only once an hour here: delivery at all proves the Redis wake from
    # the other process, not the polling safety net (without the wake the feed would still be
    # waiting when ``wait_for`` gives up).
    a = server(KE_RELAY_POLL_INTERVAL="3600")
    b = server(KE_RELAY_POLL_INTERVAL="3600")
    feed = LiveFeed(a.url, think.token, since=None, fallback_after=0)
    feed.start()
    while feed.status != "live":
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # let b's relay subscribe (it starts with its first connection)

    ids = [await asyncio.to_thread(post_broadcast, b.url, analysis.token, i) for i in range(3)]

    async def three_events() -> list:
        received = []
        async for ev in feed:
            received.append(ev["data"]["item"]["id"])
            if len(received) == 3:
                return received
        return received

    try:
        received = await asyncio.wait_for(three_events(), 60)
    except TimeoutError:
        received = None
    await feed.close()
    assert received == ids, "the wake did not cross processes"


@pytest.mark.parametrize(
    "direct_write", ["false", "true"], ids=["plain-channels", "daphne-fast-path"]
)
async def test_both_send_paths_deliver_in_order_on_a_real_server(think, server, direct_write):
    """The default plain Channels send and the opt-in daphne fast path
    (knowledge/daphne_transport.py) deliver the same stream, in order, once."""
    from knowledge import daphne_transport

    assert daphne_transport.supported()  # else the fast path would silently be the plain one
    srv = server(KE_WS_DIRECT_WRITE=direct_write)
    feed = LiveFeed(srv.url, think.token, since=None, fallback_after=0)
    feed.start()
    while feed.status != "live":
        await asyncio.sleep(0.05)
    expected = [await apublish(i) for i in range(30)]
    got = await collect(feed, 30)
    await feed.close()
    assert got == expected


@pytest.mark.parametrize(
    "direct_write", ["false", "true"], ids=["plain-channels", "daphne-fast-path"]
)
async def test_a_client_that_stops_reading_is_closed_4008_and_resumes_without_loss(
    think, server, direct_write
):
    """A real socket that stops reading (TCP back-pressure, not a queue count): daphne's
    transport fills, the server closes it for being too slow, and the client resumes from
    its last seq with nothing lost or repeated (knowledge/daphne_transport.py, back-pressure)."""
    import json
    import socket

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    srv = server(
        KE_WS_DIRECT_WRITE=direct_write,
        KE_WS_STALL_SECONDS="1",
        KE_WS_SOCKET_SNDBUF="4096",
        KE_WS_MAX_QUEUE="100000",  # the stall, not the queue bound, must be what closes it
    )
    ws_url = f"ws://127.0.0.1:{srv.port}/ws/knowledge/?token={think.token}"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
    sock.connect(("127.0.0.1", srv.port))
    received: list[int] = []
    ws = await connect(ws_url, sock=sock, max_queue=1, max_size=2**22, ping_interval=None)
    await ws.send(json.dumps({"action": "subscribe", "since": None}))
    assert json.loads(await ws.recv())["type"] == "subscribed"

    # Stop reading; publish far more than the two socket buffers hold.
    big = "x" * 4000

    def burst(first: int) -> list[int]:
        with transaction.atomic():
            return [
                publish_event("knowledge_broadcast", {"i": i, "pad": big}, source="analysis").seq
                for i in range(first, first + 100)
            ]

    expected = await database_sync_to_async(burst)(0)
    log = srv.log_path
    for _ in range(600):  # wait for the server to say so, up to a minute
        if "with 4008" in log.read_text(errors="replace"):
            break
        await asyncio.sleep(0.1)
    assert "with 4008" in log.read_text(errors="replace"), "the stalled socket was not closed"

    # Read what made it through, up to the end of the connection.
    try:
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if msg["type"] == "event":
                received.append(msg["seq"])
    except ConnectionClosed:
        pass
    assert len(received) < len(expected)

    resume = LiveFeed(srv.url, think.token, since=received[-1] if received else expected[0] - 1)
    resume.start()
    rest = await collect(resume, len(expected) - len(received), timeout=60)
    await resume.close()
    assert received + rest == expected
