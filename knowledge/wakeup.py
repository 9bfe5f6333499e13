"""Cross-process wake-up of the relays: one Redis pub/sub channel of our own.

The event log is the truth; this only tells the other server processes "there is something
new" so their relays read the log at once instead of at their next poll
(``relay_poll_interval``). A lost wake-up costs latency, never an event.

It uses ``redis.asyncio`` directly on a channel named for this deployment
(``<layer prefix>:ke-wake``), not the channel layer's private group naming. The Redis it
talks to is the channel layer's: with a sharded ``hosts`` list every process picks the same
host for the channel (a stable hash of its name over the list, as a sharded layer picks the
shard of a group), so publishers and subscribers always meet. With no Redis channel layer
(embedded mode) there is nothing to do: one process wakes its relay directly.
"""

from __future__ import annotations

import asyncio
import logging
import zlib

import redis.asyncio as aioredis
from django.conf import settings

from knowledge import redis_writes

log = logging.getLogger(__name__)


def _layer_config() -> dict | None:
    layer = settings.CHANNEL_LAYERS.get("default", {})
    if "channels_redis" not in layer.get("BACKEND", ""):
        return None
    return layer.get("CONFIG", {})


def channel() -> str:
    config = _layer_config() or {}
    return f"{config.get('prefix', 'asgi')}:ke-wake"


def host_url() -> str | None:
    """The Redis URL every process uses for the wake channel; None without a Redis layer."""
    config = _layer_config()
    if config is None:
        return None
    hosts = config.get("hosts") or [settings.REDIS_URL]
    host = hosts[zlib.crc32(channel().encode()) % len(hosts)]
    return host["address"] if isinstance(host, dict) else host


# --- publishing (any thread, after a commit) -----------------------------------------------


def publish(seq: int) -> None:
    """One PUBLISH per commit (knowledge/redis_writes.py: with the cache's writes of the same
    commit when they go to the same server); a Redis outage is logged and otherwise ignored."""
    url = host_url()
    if url is not None:
        redis_writes.publish(url, channel(), str(seq))


# --- listening (one subscription per relay, i.e. per server process) -----------------------


async def listen(on_wake) -> None:
    """Call ``on_wake()`` for every wake message, forever; reconnects after an outage."""
    url = host_url()
    if url is None:
        return
    while True:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=2)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel())
            async for _message in pubsub.listen():
                on_wake()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("wake subscription failed; retrying", exc_info=True)
            await asyncio.sleep(1.0)
        finally:
            try:
                await asyncio.shield(_close(pubsub, client))
            except Exception:
                pass


async def _close(pubsub, client) -> None:
    await pubsub.aclose()
    await client.aclose()
