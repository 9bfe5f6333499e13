"""The Redis writes that follow a commit, sent together: one place for the rule.

A broadcast ends with two writes to Redis after its commit: the query cache's new type
tokens (knowledge/cache.py ``invalidate``) and the relays' wake-up PUBLISH
(knowledge/wakeup.py). Each was a round trip of its own, on a client of its own
(docs/performance.md, "Single broadcast: the key in the lock's round trip, the record with
the event, one Redis round trip after the commit").

Inside ``together()`` (the broadcast actions open it around each transaction) both are held
and sent when it ends, after the commit and before the action returns:

- to the same Redis server (the cache's, and the wake channel's host from the channel
  layer's config, with equal connection parameters; the database number may differ, a
  PUBLISH reaches every subscriber of the server whatever database either side selected):
  one pipeline on the cache's client, the tokens first, so a relay woken by the PUBLISH
  (and a client it tells) never reads a result cached under the old tokens;
- to different servers (a channel layer on other hosts): the tokens, then the PUBLISH on a
  client of the wake host's own, as before;
- without Redis (the embedded defaults): the local-memory cache is written at once and no
  PUBLISH is made (``wakeup.publish`` sends nothing without a Redis layer).

Outside ``together()`` every write is sent at once, by the same code. A Redis outage is
logged (at most every 10 s) and otherwise ignored, as both writes did before: a lost token
write leaves results that the outage already made unreachable, a lost wake-up costs the
relays a poll interval, never an event.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import redis
from django.core.cache import cache

log = logging.getLogger(__name__)


@dataclass
class _Writes:
    cache: dict = field(default_factory=dict)  # key -> value, stored without expiry
    publish: dict = field(default_factory=dict)  # (url, channel) -> the latest message


_held: ContextVar[_Writes | None] = ContextVar("kx_redis_writes", default=None)


@contextmanager
def together() -> Iterator[None]:
    """Hold the writes made inside (``set_cache``, ``publish``) and send them at the end
    (also when the block raises: what was held follows a commit that happened). Nested:
    the outermost block sends."""
    if _held.get() is not None:
        yield
        return
    writes = _Writes()
    token = _held.set(writes)
    try:
        yield
    finally:
        _held.reset(token)
        _send(writes)


def set_cache(values: dict) -> None:
    """``cache.set_many(values, timeout=None)``, now or at the end of ``together()``."""
    writes = _held.get()
    if writes is None:
        _send(_Writes(cache=dict(values)))
    else:
        writes.cache.update(values)


def publish(url: str, channel: str, message: str) -> None:
    """PUBLISH ``message`` on ``channel`` of the Redis at ``url``, now or at the end of
    ``together()`` (held: only the latest message per channel is sent)."""
    writes = _held.get()
    if writes is None:
        _send(_Writes(publish={(url, channel): message}))
    else:
        writes.publish[(url, channel)] = message


def _send(writes: _Writes) -> None:
    publishes = dict(writes.publish)
    client = _cache_client()
    if client is None:  # the local-memory cache (or another backend without Redis)
        if writes.cache:
            cache.set_many(writes.cache, timeout=None)
    elif writes.cache or any(_same_server(client, url) for url, _ in publishes):
        try:
            pipe = client.pipeline(transaction=False)
            for key, value in writes.cache.items():
                cache.client.set(key, value, None, client=pipe)
            for (url, channel), message in list(publishes.items()):
                if _same_server(client, url):
                    pipe.publish(channel, message)
                    del publishes[(url, channel)]
            pipe.execute()
        except Exception as exc:  # Redis down: results expire, relays still poll the log
            _warn(exc)
    for (url, channel), message in publishes.items():
        try:
            _client_for(url).publish(channel, message)
        except Exception as exc:  # Redis down: relays still poll the log
            _warn(exc)


def _cache_client() -> redis.Redis | None:
    """The cache's Redis client (django-redis: the one it writes with), else None."""
    client = getattr(cache, "client", None)
    if not hasattr(client, "get_client"):
        return None
    try:
        return client.get_client(write=True)
    except Exception as exc:  # noqa: BLE001 - a bad configuration: write nothing, say so
        _warn(exc)
        return None


def _same_server(client: redis.Redis, url: str) -> bool:
    pool = client.connection_pool
    return _address(pool.connection_class, pool.connection_kwargs) == _url_address(url)


@functools.cache
def _url_address(url: str) -> tuple:
    kwargs = redis.connection.parse_url(url)
    return _address(kwargs.pop("connection_class", redis.Connection), kwargs)


def _address(connection_class, kwargs: dict) -> tuple:
    """What makes two clients talk to the same server as the same user (not the database)."""
    names = ("host", "port", "path", "username", "password")
    return (connection_class.__name__, *(kwargs.get(name) for name in names))


_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def _client_for(url: str) -> redis.Redis:
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = redis.Redis.from_url(
                url, socket_connect_timeout=1, socket_timeout=1
            )
    return client


_last_warning = [0.0]


def _warn(exc: Exception) -> None:
    now = time.monotonic()
    if now - _last_warning[0] > 10:
        _last_warning[0] = now
        log.warning("after-commit Redis write failed; relays will poll the log (%s)", exc)
