"""The cross-process wake-up on its own Redis pub/sub channel, with a sharded channel layer.

Before, a commit published the wake on ``REDIS_URL`` under channels_redis's private group
name, while the relays subscribed through the layer, which shards groups over its ``hosts``:
with several hosts the wake could go to a Redis no relay listened on. Now publishers and
relays pick the same host from the layer's list (knowledge/wakeup.py). The test starts its
own three redis-servers on spare ports (one for ``REDIS_URL``, two as the layer's shards) and
two daphne processes whose relays poll the log only every 30 s: delivery within seconds
proves the wake crossed processes through the sharded layer.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile

import pytest
from channels.db import database_sync_to_async

from knowledge.tests.daphne_server import DaphneServer, free_port, post_broadcast
from knowledge.tests.test_consumers import _close_async_db_connections  # noqa: F401 (autouse)
from kx_sdk.live import LiveFeed

# Tests that start redis-servers of their own: skipped where none is installed, except in CI,
# where a missing one must fail the run rather than hide the tests.
needs_redis_server = pytest.mark.skipif(
    not shutil.which("redis-server") and os.environ.get("CI") != "true",
    reason="needs redis-server (in CI a missing one fails instead)",
)

pytestmark = [pytest.mark.django_db(transaction=True), needs_redis_server]


@pytest.fixture
def redis_servers():
    procs, tmp = [], tempfile.mkdtemp(prefix="ke-wake-")

    def start() -> str:
        port = free_port()
        procs.append(
            subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    tmp,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        url = f"redis://127.0.0.1:{port}/0"
        import redis

        client = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                client.ping()
                return url
            except redis.ConnectionError:
                import time

                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(10)
    shutil.rmtree(tmp, ignore_errors=True)


async def test_wake_crosses_processes_with_a_sharded_layer(think, analysis, redis_servers):
    cache_url, shard_a, shard_b = redis_servers(), redis_servers(), redis_servers()
    env = {
        "REDIS_URL": cache_url,
        "KE_CHANNEL_LAYER_HOSTS": f"{shard_a},{shard_b}",
        "KE_RELAY_POLL_INTERVAL": "30",
    }
    servers = []
    for _ in range(2):
        server = DaphneServer()
        server.env.update(env)
        servers.append(server)
    await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
    a, b = servers
    feed = LiveFeed(a.url, think.token, since=None, fallback_after=0)
    try:
        feed.start()
        async with asyncio.timeout(15):
            while feed.status != "live":
                await asyncio.sleep(0.05)
        # b's relay starts (and subscribes) with its first connection: open one there too.
        warm = LiveFeed(b.url, analysis.token, since=None, fallback_after=0)
        warm.start()
        async with asyncio.timeout(15):
            while warm.status != "live":
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the wake subscriptions are made as the relays start
        ids = [await asyncio.to_thread(post_broadcast, b.url, analysis.token, i) for i in range(3)]
        received = []
        async with asyncio.timeout(10):  # the relays' own log poll is 30 s away
            async for event in feed:
                received.append(event["data"]["item"]["id"])
                if len(received) == 3:
                    break
        assert received == ids
        await warm.close()
    finally:
        await feed.close()
        for server in servers:
            await asyncio.to_thread(server.stop)
        from django.db import connections

        await database_sync_to_async(connections.close_all)()
