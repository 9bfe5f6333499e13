"""The query cache: read-your-writes, per-type invalidation, TTL, statistics, warming."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conftest import issue_payload, risk_payload
from knowledge import cache as knowledge_cache
from knowledge.query import KnowledgeQuery, run_query_cached

pytestmark = pytest.mark.django_db(transaction=True)


def query(persona, **params):
    r = persona.client.get("/api/knowledge/query", params)
    assert r.status_code == 200, r.json()
    return r.json()


def subjects(result):
    return {item["subject"] for item in result["results"]}


def test_repeated_query_is_served_from_cache_without_knowledge_queries(analysis):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    # One instant for both reads: a hit recomputes freshness for now, and on a loaded
    # machine the second read came late enough to round it differently.
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False):
        first = query(analysis, types="issue_pattern")
        with CaptureQueriesContext(connection) as ctx:
            second = query(analysis, types="issue_pattern")
    assert (first["cached"], second["cached"]) == (False, True)
    assert second["results"] == first["results"]
    touched = [q["sql"] for q in ctx.captured_queries if "knowledge_knowledgeitem" in q["sql"]]
    assert touched == []  # only the token lookup hits the database


def test_write_is_visible_to_the_writers_very_next_query(analysis):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    assert query(analysis, types="issue_pattern")["cached"] is False
    assert query(analysis, types="issue_pattern")["cached"] is True

    r = analysis.broadcast("issue_pattern", issue_payload(location="b.py::g"))
    assert r.status_code == 201
    after = query(analysis, types="issue_pattern")

    assert after["cached"] is False
    assert subjects(after) == {"long_function | a.py::f", "long_function | b.py::g"}


def test_bulk_broadcast_and_validation_invalidate_too(analysis, think):
    query(think, types="issue_pattern")
    r = analysis.client.post(
        "/api/knowledge/broadcast/bulk",
        {
            "items": [
                {
                    "knowledge_type": "issue_pattern",
                    "payload": issue_payload(location=f"m{i}.py::f"),
                    "confidence": 0.5,
                }
                for i in range(3)
            ]
        },
        format="json",
    )
    assert r.json()["stored"] == 3
    seen = query(think, types="issue_pattern")
    assert seen["cached"] is False and len(seen["results"]) == 3

    item_id = seen["results"][0]["id"]
    query(think, types="issue_pattern")
    assert (
        think.client.post(
            "/api/knowledge/validate", {"item": item_id, "verdict": "confirmed"}, format="json"
        ).status_code
        == 200
    )
    validated = query(think, types="issue_pattern")
    assert validated["cached"] is False
    assert {i["validation_status"] for i in validated["results"] if i["id"] == item_id} == {
        "confirmed"
    }


def test_invalidation_is_per_type(analysis, think):
    analysis.broadcast("issue_pattern", issue_payload())
    think.broadcast("risk_pattern", risk_payload())
    query(think, types="issue_pattern")
    query(think, types="risk_pattern")
    query(think)  # every type

    analysis.broadcast("issue_pattern", issue_payload(location="new.py::f"))

    assert query(think, types="risk_pattern")["cached"] is True  # other type: still hot
    assert query(think, types="issue_pattern")["cached"] is False
    everything = query(think)
    assert everything["cached"] is False  # a query over all types includes the written one
    assert "long_function | new.py::f" in subjects(everything)


def test_evicted_generation_token_never_revives_an_old_result(analysis):
    """A counter restarting at 0 after eviction would serve the result cached under 0."""
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    query(analysis, types="issue_pattern")
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::g"))
    cache.delete(knowledge_cache.TOKEN_KEY.format("issue_pattern"))  # evicted / cache restart

    result = query(analysis, types="issue_pattern")
    assert result["cached"] is False
    assert len(result["results"]) == 2


def test_results_expire_after_the_ttl(analysis, settings):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "cache_ttl": 30}
    analysis.broadcast("issue_pattern", issue_payload())
    q = KnowledgeQuery(types=["issue_pattern"])
    run_query_cached(q, analysis.worker)
    key = knowledge_cache.result_key(q.cache_params(analysis.worker.name), q.types)
    if hasattr(cache, "ttl"):  # Redis: the server expires it
        assert 0 < cache.ttl(key) <= 30
    else:  # local memory: expiry is checked against the clock
        with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=31), tick=False):
            assert cache.get(key) is None
            assert run_query_cached(q, analysis.worker)[1] is False
    assert cache.get(key) is not None  # still cached now, in real time


def test_a_hit_shows_current_freshness(recall):
    payload = {"target": "a.py", "aspect": "churn", "value": "high"}
    assert recall.broadcast("context_enrichment", payload).status_code == 201
    first = query(recall, types="context_enrichment")
    start = dt.datetime.now(dt.UTC)
    with time_machine.travel(start + dt.timedelta(seconds=120), tick=False):
        later = query(recall, types="context_enrichment")
    assert later["cached"] is True
    # context_enrichment decays in 6 h: two minutes cost ~0.55% of its freshness.
    assert later["results"][0]["freshness"] < first["results"][0]["freshness"] - 0.004


def test_stats_count_hits_and_misses(analysis, staff_client):
    before = staff_client.get("/api/knowledge/stats").json()["cache"]
    query(analysis, types="issue_pattern")
    query(analysis, types="issue_pattern")
    query(analysis, types="issue_pattern")
    after = staff_client.get("/api/knowledge/stats").json()["cache"]
    assert after["hits"] - before["hits"] == 2
    assert after["misses"] - before["misses"] == 1
    assert after["enabled"] is True and after["ttl_seconds"] > 0
    assert 0 < after["hit_rate"] <= 1
    metrics = staff_client.get("/metrics").content.decode()
    assert (
        f"kx_cache_hits {float(after['hits'])}" in metrics
        or f"kx_cache_hits {after['hits']}" in metrics
    )


def test_disabled_cache_always_computes(analysis, settings):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "cache_enabled": False}
    query(analysis, types="issue_pattern")
    assert query(analysis, types="issue_pattern")["cached"] is False


def test_warm_cache_fills_the_common_queries(think, analysis, capsys):
    analysis.broadcast("issue_pattern", issue_payload())
    call_command("warm_cache")
    assert "warmed" in capsys.readouterr().out
    relevant = ",".join(
        sorted(
            [
                "risk_pattern",
                "successful_fix",
                "issue_pattern",
                "pattern_evolution",
                "learned_pattern",
                "proposal_quality",
                "context_enrichment",
            ]
        )
    )
    result = query(think, types=relevant)
    assert result["cached"] is True
    assert subjects(result) == {"long_function | app/x.py::f"}
    assert query(analysis, types="issue_pattern")["cached"] is False  # viewer-specific key


def test_a_page_whose_item_decays_below_min_freshness_is_recomputed_and_recached(recall):
    # context_enrichment decays in 6 h: freshness 0.99 is reached after ~217 s.
    assert (
        recall.broadcast(
            "context_enrichment", {"target": "a.py", "aspect": "churn", "value": "hi"}
        ).status_code
        == 201
    )
    params = {"types": "context_enrichment", "min_freshness": 0.99}
    assert len(query(recall, **params)["results"]) == 1
    start = dt.datetime.now(dt.UTC)
    with time_machine.travel(start + dt.timedelta(seconds=100), tick=False):
        assert query(recall, **params)["cached"] is True
    with time_machine.travel(start + dt.timedelta(seconds=250), tick=False):
        stale = query(recall, **params)
        again = query(recall, **params)
    assert stale["cached"] is False and stale["results"] == []
    assert again["cached"] is True and again["results"] == []


def test_a_hit_is_the_same_page_as_the_miss_even_beyond_64_bit_integers(analysis):
    # Pages are cached as orjson bytes; a payload orjson cannot encode is cached as is.
    big = {**issue_payload(location="big.py::f"), "lines": 2**70}
    assert analysis.broadcast("issue_pattern", big).status_code == 201
    analysis.broadcast("issue_pattern", issue_payload(location="small.py::f"))
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False):  # one freshness for both
        first = query(analysis, types="issue_pattern")
        second = query(analysis, types="issue_pattern")
    assert (first["cached"], second["cached"]) == (False, True)
    assert second["results"] == first["results"]
    assert {i["payload"].get("lines") for i in second["results"]} == {2**70, None}
