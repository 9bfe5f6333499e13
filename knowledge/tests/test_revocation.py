"""Revocation reaches open sockets and parked long polls (issue 10, finding 1).

Before: credentials were checked only in ``connect()``; after a token rotation, a deactivated
worker or a logout the socket kept receiving events. Now every process's relay re-checks the
credentials of its connections (knowledge/live_auth.py) and ends them: 4401 / 4403 for a
socket, 401 / 403 for a long poll. Tested in one process (the embedded server) and across two
real daphne processes (one Redis when REDIS_URL is set, else one SQLite file).
"""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import AsyncClient

from config.asgi import application
from conftest import wait_until_long_poll_parked
from identity.models import Worker
from knowledge.tests.daphne_server import DaphneServer
from knowledge.tests.live_clients import close_code, long_poll, staff_session
from knowledge.tests.test_consumers import _close_async_db_connections  # noqa: F401 (autouse)

pytestmark = [pytest.mark.django_db(transaction=True)]


@database_sync_to_async
def rotate(name: str) -> None:
    call_command("create_worker", name, "--rotate", stdout=open("/dev/null", "w"))


@database_sync_to_async
def deactivate(name: str) -> None:
    worker = Worker.objects.get(name=name)
    worker.is_active = False
    worker.save()


async def open_socket(path: str, headers=()) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application, path, headers=list(headers))
    assert (await comm.connect(timeout=5))[0]
    await comm.send_json_to({"action": "subscribe", "since": None})
    assert (await comm.receive_json_from(timeout=5))["type"] == "subscribed"
    return comm


async def closed_with(comm: WebsocketCommunicator, timeout: float = 5) -> int:
    """The code the server closes with (events and heartbeats before it are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            out = await comm.receive_output(timeout=timeout)
            if out["type"] == "websocket.close":
                return out["code"]


async def test_rotating_a_token_closes_the_socket_and_answers_the_long_poll(think, analysis):
    comm = await open_socket(f"/ws/knowledge/?token={think.token}")
    other = await open_socket(f"/ws/knowledge/?token={analysis.token}")
    poll = asyncio.create_task(
        AsyncClient().get(
            "/api/knowledge/events", {"wait": 20}, headers={"Authorization": f"Token {think.token}"}
        )
    )
    # the poll must be parked before the rotation (authenticated with the old token), else it
    # is refused at the door instead of being answered by the revocation check
    assert await asyncio.to_thread(wait_until_long_poll_parked)
    await rotate("think")
    assert await closed_with(comm) == 4401
    response = await asyncio.wait_for(poll, 10)
    assert response.status_code == 401 and response.json()["detail"] == "credentials revoked"
    # Someone else's socket is untouched.
    await other.send_json_to({"action": "ping"})
    assert (await other.receive_json_from(timeout=5))["type"] == "pong"
    await other.disconnect()


async def test_deactivating_a_worker_closes_its_socket(think):
    comm = await open_socket(f"/ws/knowledge/?token={think.token}")
    await deactivate("think")
    assert await closed_with(comm) == 4401


async def test_logout_closes_a_staff_socket_and_demotion_answers_4403(db):
    alice, alice_cookie = await staff_session("alice")
    bob, bob_cookie = await staff_session("bob")
    a = await open_socket("/ws/knowledge/", [(b"cookie", f"sessionid={alice_cookie}".encode())])
    b = await open_socket("/ws/knowledge/", [(b"cookie", f"sessionid={bob_cookie}".encode())])
    await database_sync_to_async(alice.logout)()
    assert await closed_with(a) == 4401
    await database_sync_to_async(get_user_model().objects.filter(username="bob").update)(
        is_staff=False
    )
    assert await closed_with(b) == 4403


# --- two server processes ----------------------------------------------------------------------


async def test_revocation_reaches_sockets_and_polls_on_two_server_processes(think, analysis):
    from websockets.asyncio.client import connect

    servers = await asyncio.gather(*(asyncio.to_thread(DaphneServer().start) for _ in range(2)))
    try:
        sockets = []
        for server in servers:
            ws = await connect(f"ws://127.0.0.1:{server.port}/ws/knowledge/?token={think.token}")
            await ws.send(json.dumps({"action": "subscribe", "since": None}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            sockets.append(ws)
        polls = [
            asyncio.create_task(asyncio.to_thread(long_poll, s.url, think.token)) for s in servers
        ]
        await asyncio.sleep(0.5)  # the polls park
        await rotate("think")

        codes = await asyncio.wait_for(asyncio.gather(*(close_code(ws) for ws in sockets)), 10)
        assert codes == [4401, 4401]
        answers = await asyncio.wait_for(asyncio.gather(*polls), 10)
        assert [status for status, _ in answers] == [401, 401]
    finally:
        for server in servers:
            await asyncio.to_thread(server.stop)
