"""A request for a sync view crosses from the event loop to a thread once, not once per
middleware (config/http.py, ``OneHopASGIHandler``): under Django's ``ASGIHandler`` a
``MiddlewareMixin`` middleware hops to the thread and back for each of its hooks, which was
most of a cached hit's server time (docs/performance.md, "One thread hop per request"). The
long poll keeps the async chain, so its wait still holds no thread."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref import sync
from asgiref.testing import ApplicationCommunicator
from django.core.handlers.asgi import ASGIHandler

from config.http import OneHopASGIHandler, view_is_async
from config.redis_cache import ProcessRedisCache
from conftest import risk_payload

pytestmark = pytest.mark.django_db(transaction=True)


def get(handler, path: str, query: str, token: str, hops: list) -> tuple[int, dict]:
    """One GET through ``handler`` as daphne would send it; the number of sync_to_async
    calls it made is appended to ``hops``."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver"), (b"authorization", f"Token {token}".encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }

    async def run():
        calls = [0]
        original = sync.SyncToAsync.__call__

        async def counting(self, *args, **kwargs):
            calls[0] += 1
            return await original(self, *args, **kwargs)

        sync.SyncToAsync.__call__ = counting
        try:
            app = ApplicationCommunicator(handler, scope)
            await app.send_input({"type": "http.request", "body": b""})
            start = await app.receive_output(30)
            body = await app.receive_output(30)
        finally:
            sync.SyncToAsync.__call__ = original
        hops.append(calls[0])
        return start["status"], json.loads(body["body"])

    return asyncio.run(run())


def test_a_sync_view_is_answered_in_one_hop_with_the_same_answer(think):
    assert think.broadcast("risk_pattern", risk_payload("one hop")).status_code == 201
    one_hop, django_default = [], []
    for _ in range(2):  # the second time, a cached hit
        answer = get(
            OneHopASGIHandler(), "/api/knowledge/query", "types=risk_pattern", think.token, one_hop
        )
        default = get(
            ASGIHandler(), "/api/knowledge/query", "types=risk_pattern", think.token, django_default
        )
        assert answer[0] == default[0] == 200
        assert [i["id"] for i in answer[1]["results"]] == [i["id"] for i in default[1]["results"]]
        assert answer[1]["results"][0]["payload"]["pattern"] == "one hop"
    # the chain + the request_started / request_finished receivers; Django's own: ~15
    assert max(one_hop) <= 3, one_hop
    assert min(django_default) > max(one_hop) + 5, (django_default, one_hop)


def test_only_the_long_poll_takes_the_async_chain():
    assert view_is_async("/api/knowledge/events")
    assert not view_is_async("/api/knowledge/query")
    assert not view_is_async("/api/knowledge/broadcast")
    assert not view_is_async("/no/such/path")


def test_the_cache_backends_of_each_request_share_the_process_redis_client():
    # Under ASGI each request builds its own cache backend; before, each also built a Redis
    # client (~75 µs of a cached hit). One client per configuration, a new one for another.
    def backend(location):
        return ProcessRedisCache(location, {"OPTIONS": {"IGNORE_EXCEPTIONS": True}})

    first, second = backend("redis://127.0.0.1:6379/1"), backend("redis://127.0.0.1:6379/1")
    assert first is not second and first.client is second.client
    assert first.client.get_client(write=True) is second.client.get_client(write=True)
    assert backend("redis://127.0.0.1:6379/2").client is not first.client
