"""The lean path of ``GET query`` (knowledge/api/lean.py): a worker's plain query is answered
without DRF's per-request machinery, with the bytes and headers DRF's path gives; everything
else (errors, people, other formats) still goes through DRF."""

from __future__ import annotations

import dataclasses
import time

import pytest
import time_machine
from rest_framework.views import APIView

from conftest import issue_payload, risk_payload
from knowledge.api.lean import _parse
from knowledge.registry import registry

pytestmark = pytest.mark.django_db

PLAIN = "application/json"
# Negotiated to the same JSON renderer, but not one of the lean path's plain values.
NEGOTIATED = "application/json, text/plain"
QUERY = {"types": "risk_pattern,issue_pattern", "min_freshness": "0.1"}


@pytest.fixture
def drf_requests(monkeypatch):
    """The paths of the requests DRF's views wrapped (``APIView.initialize_request``)."""
    seen = []
    original = APIView.initialize_request

    def counted(self, request, *args, **kwargs):
        seen.append(request.path)
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(APIView, "initialize_request", counted)
    return seen


@pytest.fixture
def frozen():
    with time_machine.travel(time.time(), tick=False):
        yield


def ask(persona, accept: str, params=None):
    return persona.client.get("/api/knowledge/query", params or QUERY, HTTP_ACCEPT=accept)


def same_answer(lean, drf) -> None:
    assert lean.status_code == drf.status_code
    assert dict(lean.headers) == dict(drf.headers)
    assert lean.content == drf.content


def test_a_workers_plain_query_skips_drf_and_answers_the_same_bytes(
    think, analysis, learning, drf_requests, frozen
):
    assert analysis.broadcast("risk_pattern", risk_payload()).status_code == 201
    assert analysis.broadcast("issue_pattern", issue_payload()).status_code == 201
    # Visibility: one targeted at think, one at learning (think must not see it).
    for target, pattern in (("think", "for think"), ("learning", "for learning")):
        answer = analysis.broadcast("risk_pattern", risk_payload(pattern), targets=[target])
        assert answer.status_code == 201
    # The token's first request (not yet in the token cache) is authenticated by DRF's path.
    drf_requests.clear()
    assert ask(think, PLAIN, {"types": "issue_pattern"}).status_code == 200
    assert drf_requests == ["/api/knowledge/query"]
    drf_requests.clear()

    lean_miss = ask(think, PLAIN)
    assert drf_requests == []
    lean_hit = ask(think, PLAIN)
    drf_hit = ask(think, NEGOTIATED)
    assert drf_requests == ["/api/knowledge/query"]
    assert lean_miss.json()["cached"] is False and lean_hit.json()["cached"] is True
    same_answer(lean_hit, drf_hit)
    subjects = {item["subject"] for item in lean_hit.json()["results"]}
    assert "for think" in str(subjects) and "for learning" not in str(subjects)
    assert lean_hit["Allow"] == "GET, POST, HEAD, OPTIONS" and lean_hit["Vary"] == "Accept"


def test_a_miss_and_the_cache_off_answer_the_same_bytes(think, analysis, settings, frozen):
    assert analysis.broadcast("risk_pattern", risk_payload()).status_code == 201
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "cache_enabled": False}
    for params in (QUERY, {"q": "migration"}, {"sources": "analysis", "limit": "1"}):
        same_answer(ask(think, PLAIN, params), ask(think, NEGOTIATED, params))


@pytest.mark.parametrize(
    "params, field",
    [
        ({"types": "no_such_type"}, "types"),
        ({"colour": "red"}, "colour"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"min_freshness": "2"}, "min_freshness"),
    ],
)
def test_bad_queries_are_answered_by_drf_in_the_error_shape(think, drf_requests, params, field):
    answer = ask(think, PLAIN, params)
    assert answer.status_code == 400
    assert field in answer.json()["errors"] and answer.json()["detail"]
    assert drf_requests == ["/api/knowledge/query"]


def test_people_and_other_formats_go_through_drf(think, staff_client, drf_requests):
    assert staff_client.get("/api/knowledge/query", QUERY).status_code == 200
    assert ask(think, "text/html").status_code == 200
    indented = ask(think, "application/json; indent=2")
    assert indented.status_code == 200 and b"\n  " in indented.content
    assert len(drf_requests) == 3


def test_a_refused_request_is_answered_by_drf_with_its_own_count(think, settings, drf_requests):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "throttle_rate_query": "3/min"}
    with time_machine.travel((int(time.time() // 60) + 1) * 60 + 1, tick=False):
        assert [ask(think, PLAIN).status_code for _ in range(5)] == [200, 200, 200, 429, 429]
    # The first by DRF (the token's first request), two lean; the refusals by DRF's throttle
    # from the counts the lean path peeked at (one count per request: else the third 200
    # would have been refused).
    assert drf_requests == ["/api/knowledge/query"] * 3


def test_a_query_string_is_validated_once_and_again_when_the_types_change(think, drf_requests):
    # The lean path keeps each query string's validated query (DRF's validation was ~10 % of
    # a cached hit); a type registered since must not be refused from that memory, and a type
    # removed since must be refused.
    _parse.cache_clear()
    for _ in range(3):
        assert ask(think, PLAIN, {"types": "risk_pattern"}).status_code == 200
    assert _parse.cache_info().hits == 2
    assert ask(think, PLAIN, {"types": "lean_memo_type"}).status_code == 400
    registry.register(dataclasses.replace(registry["risk_pattern"], name="lean_memo_type"))
    try:
        assert ask(think, PLAIN, {"types": "lean_memo_type"}).status_code == 200
    finally:
        registry.unregister("lean_memo_type")
    assert ask(think, PLAIN, {"types": "lean_memo_type"}).status_code == 400
