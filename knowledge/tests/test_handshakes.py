"""The bound on socket handshakes in progress, and the cost of one handshake (issue 14).

Before: nothing bounded the handshakes a process worked on at once. Under a reconnect storm
they queued past daphne's 5 s handshake timeout and the server spent its CPU on handshakes
whose clients had given up (docs/performance.md, "10,000 connections"). Now a handshake
past ``ws_handshakes_in_flight`` is refused at once (HTTP 503 + Retry-After, or close 4013),
and the ones admitted complete. Handshakes are held in progress here the way load holds them:
the thread their credential check needs is busy (or, on a real daphne, the worker table is
locked), not by a sleep.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from config.asgi import application
from identity.actions import do_create_worker
from knowledge import live_auth
from knowledge.handshakes import CLOSE_TRY_AGAIN
from knowledge.tests.daphne_server import DaphneServer
from knowledge.tests.test_consumers import (  # noqa: F401 (autouse)
    _close_async_db_connections,
    ke,
    subscribe,
)

pytestmark = [pytest.mark.django_db(transaction=True)]

DENIAL = {"websocket.http.response": {}}  # ASGI's denial-response extension


def gate():
    """The process's handshake gate inside the real ASGI app (Origin check → gate → ...)."""
    return application.application_mapping["websocket"].app


def communicator(token: str, headers=None, extensions=None) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application, f"/ws/knowledge/?token={token}", headers=headers)
    if extensions is not None:
        comm.scope["extensions"] = extensions
    return comm


async def until(condition, what: str, timeout: float = 10.0) -> None:
    """Wait for ``condition()`` to hold (checked on every turn of the loop)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
async def _no_handshake_left_over():
    """A socket of an earlier test whose event loop closed mid-handshake holds its slot in
    the process-wide gate until its coroutine is collected (daphne cancels such tasks; the
    test loop only drops them): collect them, so each test starts with an empty gate."""
    gc.collect()
    await until(lambda: gate().in_progress == 0, "no handshake left from earlier tests")


async def test_past_the_bound_a_handshake_is_refused_and_admitted_ones_complete(think):
    release = threading.Event()
    try:
        await _bound_refuses_and_admits(think, release)
    finally:
        release.set()  # a failure must not leave the one sync thread blocked for the suite


async def _bound_refuses_and_admits(think, release):
    with ke(ws_handshakes_in_flight=3, ws_handshake_retry_after=2):
        # The one thread credential checks run in is busy (as under load): every admitted
        # handshake stays in progress until it is free.
        busy = asyncio.ensure_future(sync_to_async(release.wait, thread_sensitive=True)())
        held = [communicator(think.token) for _ in range(3)]
        pending = [asyncio.ensure_future(c.connect(timeout=30)) for c in held]
        await until(lambda: gate().in_progress == 3, "3 handshakes in progress")

        # The 4th: a client that reads HTTP statuses, on a server with the denial extension.
        refused = communicator(think.token, extensions=DENIAL)
        await refused.send_input({"type": "websocket.connect"})
        start = await refused.receive_output(timeout=5)
        assert start["type"] == "websocket.http.response.start"
        assert start["status"] == 503
        # Retry-After is this client's slot: at least the configured 2 s, later when the
        # process-wide gate has measured a slow rate or handed out slots before.
        retry_after = int(dict(start["headers"])[b"retry-after"])
        assert retry_after >= 2
        body = await refused.receive_output(timeout=5)
        assert json.loads(body["body"])["detail"].endswith(f"retry after {retry_after} s")

        # Where the server cannot answer with a status (no extension), and for a browser
        # (which never sees one): accepted, then closed 4013 with the retry-after.
        same_origin = [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000")]
        browser = communicator(think.token, headers=same_origin)
        browser.scope["extensions"] = DENIAL
        for comm in (communicator(think.token), browser):
            connected, _ = await comm.connect(timeout=5)
            assert connected
            close = await comm.receive_output(timeout=5)
            assert close["type"] == "websocket.close" and close["code"] == CLOSE_TRY_AGAIN
            later = int(close["reason"].removeprefix("retry after ").removesuffix(" s"))
            assert later >= retry_after and close["reason"] == f"retry after {later} s"
            retry_after = later
        assert gate().in_progress == 3  # the refusals took no slot

        release.set()
        await busy
        for comm, outcome in zip(held, await asyncio.gather(*pending), strict=True):
            assert outcome == (True, None)
            assert (await subscribe(comm))["recovered"] is True
        assert gate().in_progress == 0
        again = communicator(think.token)
        assert await again.connect(timeout=5) == (True, None)
        await subscribe(again)
        for comm in (*held, again):
            await comm.disconnect()


async def test_refused_clients_are_given_successive_slots_not_the_same_second(think):
    """Told "1 s" all at once, 10,000 refused clients came back together and were refused
    again (docs/performance.md): each refusal now takes the next slot at the rate the gate
    completes handshakes (before it has measured one: the bound per second)."""
    from channels.routing import URLRouter

    from knowledge.handshakes import HandshakeGate
    from knowledge.routing import SessionUnlessToken, websocket_urlpatterns

    fresh = HandshakeGate(SessionUnlessToken(URLRouter(websocket_urlpatterns)))
    release = threading.Event()
    with ke(ws_handshakes_in_flight=1, ws_handshake_retry_after=1):
        busy = asyncio.ensure_future(sync_to_async(release.wait, thread_sensitive=True)())
        held = WebsocketCommunicator(fresh, f"/ws/knowledge/?token={think.token}")
        pending = asyncio.ensure_future(held.connect(timeout=30))
        await until(lambda: fresh.in_progress == 1, "1 handshake in progress")
        waits = []
        for _ in range(4):
            refused = WebsocketCommunicator(fresh, f"/ws/knowledge/?token={think.token}")
            refused.scope["extensions"] = DENIAL
            await refused.send_input({"type": "websocket.connect"})
            start = await refused.receive_output(timeout=5)
            assert start["status"] == 503
            waits.append(int(dict(start["headers"])[b"retry-after"]))
            await refused.receive_output(timeout=5)
        release.set()
        await busy
        assert (await pending) == (True, None)
        await held.disconnect()
    assert waits == sorted(waits) and waits[-1] >= waits[0] + 2, waits


def test_a_token_with_a_warm_cache_is_checked_without_a_query(think):
    """The handshake's credential check: the token cache entry carries the read scope. It
    used to query the worker table on every handshake and read the scope separately."""
    scope = {"type": "websocket", "query_string": f"token={think.token}".encode()}
    first = live_auth.socket_viewer(scope)  # a cold cache: one query fills it
    with CaptureQueriesContext(connection) as queries:
        again = live_auth.socket_viewer(scope)
    assert len(queries) == 0, [q["sql"] for q in queries]
    assert again == first
    assert again.worker == "think" and again.credential.kind == "token"
    # A rotated token is refused at once: the rotation drops the cache entry.
    from identity.actions import do_rotate_token

    do_rotate_token(think.worker)
    assert live_auth.socket_viewer(scope) is None


async def test_a_live_only_subscribe_reads_nothing_from_the_database(think, analysis):
    """A subscribe with ``since`` null starts at the relay's position; it used to read the
    log's epoch and top for every socket (a trip to the relay's database threads each)."""
    from knowledge.relay import process_stats

    quiet = {"relay_poll_interval": 3600, "live_auth_recheck_seconds": 3600}
    with ke(**quiet):
        first = communicator(think.token)
        await first.connect(timeout=5)
        top = (await subscribe(first))["top"]  # the relay is up
        reads = process_stats["db_reads"]
        second = communicator(analysis.token)
        await second.connect(timeout=5)
        answer = await subscribe(second)
        assert process_stats["db_reads"] == reads
        assert answer["recovered"] is True and answer["position"] == answer["top"] == top
        # A resume still reads the log (its prune horizon and epoch decide).
        await subscribe(second, since=top)
        assert process_stats["db_reads"] > reads
        for comm in (first, second):
            await comm.disconnect()


# --- on a real daphne --------------------------------------------------------------------------


@pytest.fixture
def server():
    servers = []

    def start(**env):
        # Handshakes held on the lock must not hit daphne's own 5 s handshake timeout on a
        # loaded machine.
        s = DaphneServer(daphne_args=("--websocket_connect_timeout", "120"), **env).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def hold_worker_table(locked: threading.Event, release: threading.Event) -> None:
    """Lock the worker table until ``release``: every credential check that reaches the
    database waits (a cold token cache), so its handshake stays in progress."""
    try:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("LOCK TABLE workers_worker IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(60)
    finally:
        connections.close_all()


async def ws_connect(url: str):
    from websockets.asyncio.client import connect

    return await connect(url, open_timeout=60, ping_interval=None)


@pytest.mark.postgres
@pytest.mark.skipif(
    not settings.IS_POSTGRES,
    reason="holds handshakes with a table lock (PostgreSQL; SQLite's WAL readers never wait)",
)
async def test_a_real_daphne_refuses_past_the_bound_with_503_and_retry_after(server):
    from websockets.exceptions import InvalidStatus

    from kx_sdk.live import LiveFeed

    _worker, token = await sync_to_async(do_create_worker)("storm", None)
    srv = server(KE_WS_HANDSHAKES_IN_FLIGHT="2", KE_WS_HANDSHAKE_RETRY_AFTER="1")
    url = f"ws://127.0.0.1:{srv.port}/ws/knowledge/?token={token}"
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_worker_table, args=(locked, release))
    holder.start()
    try:
        await asyncio.to_thread(locked.wait, 30)
        # Five handshakes at once: two are admitted (and wait on the lock), three refused.
        attempts = [asyncio.ensure_future(ws_connect(url)) for _ in range(5)]
        await until(lambda: sum(a.done() for a in attempts) == 3, "3 refused", timeout=60)
        refusals = [a.exception() for a in attempts if a.done()]
        for exc in refusals:
            assert isinstance(exc, InvalidStatus), exc
            assert exc.response.status_code == 503
        # Each refused client its own slot (spread: tested above), at least the floor.
        waits = sorted(int(exc.response.headers["Retry-After"]) for exc in refusals)
        assert waits[0] >= 1, waits
        # The SDK's feed, refused meanwhile, waits and retries; it does not fall back to
        # polling (a failed connect would, with fallback_after=1).
        statuses = []
        feed = LiveFeed(srv.url, token, fallback_after=1, on_status=statuses.append)
        feed.start()
        await until(lambda: feed.stats["refusals"] >= 1, "the feed refused", timeout=60)
    finally:
        release.set()
        await asyncio.to_thread(holder.join, 30)
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    admitted = [ws for ws in outcomes if not isinstance(ws, BaseException)]
    assert len(admitted) == 2, outcomes
    for ws in admitted:
        await ws.send(json.dumps({"action": "subscribe"}))
        assert json.loads(await ws.recv())["type"] == "subscribed"
        await ws.close()
    await until(lambda: feed.status == "live", "the feed live", timeout=60)
    await feed.close()
    assert "polling" not in statuses
    again = await ws_connect(url)
    await again.send(json.dumps({"action": "subscribe"}))
    assert json.loads(await again.recv())["type"] == "subscribed"
    await again.close()
