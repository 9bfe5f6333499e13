"""A cached query hit: its Redis round trips, and the checks it still makes (issue 14).

A hit used to make eight round trips to Redis (address, token and scope counters, the token
entry, the read scope, the type tokens, the contested types, the page), then three, then
two; now one: a pipeline for every counter, the token entry (which carries the read scope),
the type tokens, the contested types (the query is parsed before authentication, so its types
are known) and the page's slot (named by the token's hash and the query string; its page
counts only under the current type tokens, viewer and read scope).
"""

from __future__ import annotations

import time

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from bench.redis_trips import count_redis_trips
from conftest import risk_payload
from dashboard import latency
from identity.actions import do_rotate_token
from identity.models import WorkerScope
from knowledge import cache as knowledge_cache

pytestmark = pytest.mark.django_db

ON_REDIS = hasattr(cache, "delete_pattern")
QUERY = {"types": "risk_pattern,issue_pattern", "min_freshness": 0.1}


@pytest.fixture
def limit(settings):
    """Set product limits, with the clock held inside one rate window (see test_limits)."""

    def set_limits(**values):
        settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, **values}

    with time_machine.travel((int(time.time() // 60) + 1) * 60 + 1, tick=False):
        yield set_limits


def hit(persona):
    return persona.client.get("/api/knowledge/query", QUERY)


@pytest.mark.skipif(not ON_REDIS, reason="round trips are a Redis matter")
def test_a_cached_hit_makes_one_round_trip_and_no_query(think, analysis):
    assert analysis.broadcast("risk_pattern", risk_payload()).status_code == 201
    miss = hit(think)
    assert miss.status_code == 200 and miss.json()["cached"] is False
    assert hit(think).json()["cached"] is True
    # The shared statistics are flushed at most once a second (or two): not on this hit.
    knowledge_cache.flush_stats()
    latency.flush()
    with count_redis_trips() as trips, CaptureQueriesContext(connection) as queries:
        answer = hit(think)
    assert answer.status_code == 200 and answer.json()["cached"] is True
    assert answer.json()["results"] == [
        {**item, "freshness": answer.json()["results"][0]["freshness"]}
        for item in miss.json()["results"]
    ]
    assert len(queries) == 0
    assert trips.round_trips == 1, trips


def test_rate_limits_hold_on_cached_hits(think, analysis, limit):
    limit(throttle_rate_query="3/min")
    assert hit(think).status_code == 200
    assert hit(think).status_code == 200
    assert hit(think).status_code == 200
    refused = hit(think)
    assert refused.status_code == 429 and "rate limit 'query'" in refused.json()["detail"]
    assert refused["Retry-After"]
    # Per token: another worker's hits are not refused.
    assert hit(analysis).status_code == 200


def test_a_bad_token_is_refused_and_uses_no_workers_budget(think, limit):
    limit(throttle_rate_client="2/min")
    assert hit(think).status_code == 200
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION="Token kx_not-a-token")
    for _ in range(3):
        refused = stranger.get("/api/knowledge/query", QUERY)
        assert refused.status_code == 401, refused.content
    assert hit(think).status_code == 200
    assert hit(think).status_code == 429


def test_a_read_scope_change_reaches_the_next_hit(think, analysis):
    """The token entry carries the read scope: saving a scope drops it at once."""
    assert analysis.broadcast("risk_pattern", risk_payload()).status_code == 201
    assert len(hit(think).json()["results"]) == 1
    assert hit(think).json()["cached"] is True
    scope = WorkerScope.objects.create(worker=think.worker, read_types=["issue_pattern"])
    assert hit(think).json()["results"] == []
    scope.delete()
    assert len(hit(think).json()["results"]) == 1


def test_a_rotated_token_is_refused_on_the_next_hit(think):
    assert hit(think).status_code == 200
    assert hit(think).json()["cached"] is True
    do_rotate_token(think.worker)
    assert hit(think).status_code == 401


@pytest.mark.django_db(transaction=True)  # the write's invalidation runs after its commit
def test_a_write_to_a_type_reaches_the_next_hit_through_the_slot(think, analysis):
    """The page slot is read ahead of authentication: what it holds counts only under the
    type tokens it was computed with."""
    assert analysis.broadcast("risk_pattern", risk_payload("first")).status_code == 201
    assert len(hit(think).json()["results"]) == 1
    assert hit(think).json()["cached"] is True
    assert analysis.broadcast("risk_pattern", risk_payload("second")).status_code == 201
    fresh = hit(think).json()
    assert fresh["cached"] is False and len(fresh["results"]) == 2


def test_another_worker_never_reads_a_workers_page(think, analysis, learning):
    """A page is kept in the slot of the token that asked: another worker asking the same
    query string gets its own page, with its own visibility."""
    targeted = analysis.broadcast("risk_pattern", risk_payload("for think"), targets=["think"])
    assert targeted.status_code == 201
    assert "for think" in str(hit(think).json()["results"])
    assert hit(think).json()["cached"] is True
    for _ in range(2):  # a miss, then its own hit
        assert "for think" not in str(hit(learning).json()["results"])


@pytest.mark.skipif(not ON_REDIS, reason="the counters' expiry is a Redis matter")
def test_every_rate_counter_expires_with_its_window(think, limit):
    """A counter gets its expiry from the request that made it (one command per counter on
    later requests): none may be left without one, or Redis would keep every window."""
    limit(throttle_rate_client="100/min", throttle_rate_query="100/min")
    redis = cache.client.get_client(write=True)
    redis.delete(*redis.keys(cache.make_key("kx:limit:*")) or ["-"])
    for _ in range(3):
        assert hit(think).status_code == 200
    counters = redis.keys(cache.make_key("kx:limit:*"))
    assert len(counters) >= 3  # address, token, query scope
    for key in counters:
        assert 0 < redis.ttl(key) <= 61, key


@pytest.mark.skipif(not ON_REDIS, reason="round trips are a Redis matter")
def test_with_the_cache_off_a_query_makes_one_round_trip(think, analysis, settings):
    """The contested marks read which types have an unsettled conflict from the request's
    first round trip with the cache off too (they used to ask Redis again)."""
    assert analysis.broadcast("risk_pattern", risk_payload()).status_code == 201
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "cache_enabled": False}
    assert hit(think).json()["cached"] is False  # the token entry is cached from here on
    latency.flush()
    with count_redis_trips() as trips:
        answer = hit(think)
    assert answer.status_code == 200 and len(answer.json()["results"]) == 1
    assert answer.json()["results"][0]["contested"] is False
    assert trips.round_trips == 1, trips
