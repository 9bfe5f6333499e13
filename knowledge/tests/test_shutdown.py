"""SIGTERM on the web process with sockets and long polls in flight (issue 9 item 4, issue 11
item 5). Before: with long polls parked in sync views, SIGTERM left daphne hanging until
SIGKILL and the polls got no answer. Now the relay answers every parked poll, closes every
socket with 4503, then hands over to daphne's own shutdown."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest
from websockets.asyncio.client import connect

from knowledge.tests.daphne_server import DaphneServer
from knowledge.tests.live_clients import close_code, long_poll
from knowledge.tests.test_consumers import _close_async_db_connections  # noqa: F401 (autouse)

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_sigterm_answers_long_polls_closes_sockets_and_exits(think):
    server = await asyncio.to_thread(DaphneServer().start)
    try:
        sockets = []
        for _ in range(5):
            ws = await connect(f"ws://127.0.0.1:{server.port}/ws/knowledge/?token={think.token}")
            await ws.send(json.dumps({"action": "subscribe", "since": None}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            sockets.append(ws)
        polls = [
            asyncio.create_task(asyncio.to_thread(long_poll, server.url, think.token))
            for _ in range(5)
        ]
        await asyncio.sleep(1.0)  # let the polls reach the server and park
        assert not any(p.done() for p in polls)

        server.proc.terminate()  # SIGTERM
        exit_code = await asyncio.to_thread(server.proc.wait, 5)  # TimeoutExpired = it hung
        assert exit_code is not None

        answers = await asyncio.wait_for(asyncio.gather(*polls), 10)
        assert [status for status, _ in answers] == [200] * 5
        assert all(body["results"] == [] and "next" in body for _, body in answers)

        codes = await asyncio.wait_for(asyncio.gather(*(close_code(ws) for ws in sockets)), 10)
        assert codes == [4503] * 5  # reconnect elsewhere
    except subprocess.TimeoutExpired:
        pytest.fail("daphne did not exit within 5 s of SIGTERM")
    finally:
        server.stop()
