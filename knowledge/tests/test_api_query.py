"""Queries: every filter, freshness across types (time frozen), sorting, cursor pagination."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from conftest import issue_payload, risk_payload

pytestmark = pytest.mark.django_db


def ids(response):
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


def _bc(persona, ktype, payload, confidence=0.8, **extra):
    r = persona.broadcast(ktype, payload, confidence, **extra)
    assert r.status_code == 201, r.content
    return r.json()["item"]["id"]


@pytest.fixture
def corpus(analysis, think, learning):
    """A small mix of types, sources, urgencies and confidences."""
    return {
        "issue_hi": _bc(
            analysis, "issue_pattern", issue_payload(location="a.py::f"), 0.9, urgency="high"
        ),
        "issue_lo": _bc(
            analysis,
            "issue_pattern",
            issue_payload(location="b.py::g", severity="low"),
            0.3,
            urgency="low",
        ),
        "risk": _bc(think, "risk_pattern", risk_payload("cache stampede"), 0.6, urgency="critical"),
        "learned": _bc(
            learning,
            "learned_pattern",
            {"pattern": "long_function", "effect": "effective", "success_rate": 0.8, "samples": 10},
            0.7,
        ),
    }


def test_filter_by_types_sources_urgency(corpus, think):
    c = think.client
    assert set(ids(c.get("/api/knowledge/query", {"types": "issue_pattern"}))) == {
        corpus["issue_hi"],
        corpus["issue_lo"],
    }
    assert set(ids(c.get("/api/knowledge/query", {"types": "risk_pattern,learned_pattern"}))) == {
        corpus["risk"],
        corpus["learned"],
    }
    assert set(ids(c.get("/api/knowledge/query", {"sources": "think"}))) == {corpus["risk"]}
    assert set(ids(c.get("/api/knowledge/query", {"urgency": "high,critical"}))) == {
        corpus["issue_hi"],
        corpus["risk"],
    }
    assert set(ids(c.get("/api/knowledge/query", {"min_urgency": "high"}))) == {
        corpus["issue_hi"],
        corpus["risk"],
    }


def test_filter_by_confidence_subject_and_text(corpus, think):
    c = think.client
    assert set(ids(c.get("/api/knowledge/query", {"min_confidence": 0.65}))) == {
        corpus["issue_hi"],
        corpus["learned"],
    }
    assert set(ids(c.get("/api/knowledge/query", {"max_confidence": 0.5}))) == {corpus["issue_lo"]}
    assert ids(c.get("/api/knowledge/query", {"subject": "cache stampede"})) == [corpus["risk"]]
    assert ids(c.get("/api/knowledge/query", {"q": "STAMPEDE"})) == [corpus["risk"]]
    assert set(ids(c.get("/api/knowledge/query", {"q": "::"}))) == {
        corpus["issue_hi"],
        corpus["issue_lo"],
    }


def test_post_query_with_complex_body(corpus, think):
    body = {
        "types": ["issue_pattern", "risk_pattern"],
        "urgency": ["high", "critical"],
        "min_confidence": 0.5,
        "sort": "-confidence",
        "limit": 10,
    }
    r = think.client.post("/api/knowledge/query", body, format="json")
    assert ids(r) == [corpus["issue_hi"], corpus["risk"]]
    assert all("freshness" in item for item in r.json()["results"])


def test_status_and_validation_filters(corpus, think, analysis):
    analysis.broadcast(
        "issue_pattern", issue_payload(location="a.py::f", severity="medium")
    )  # revises issue_hi
    c = think.client
    assert corpus["issue_hi"] not in ids(c.get("/api/knowledge/query"))
    assert ids(c.get("/api/knowledge/query", {"status": "superseded"})) == [corpus["issue_hi"]]
    assert corpus["issue_hi"] in ids(c.get("/api/knowledge/query", {"status": "any"}))
    think.client.post(
        "/api/knowledge/validate",
        {"item": corpus["learned"], "verdict": "confirmed"},
        format="json",
    )
    assert ids(c.get("/api/knowledge/query", {"validation_status": "confirmed"})) == [
        corpus["learned"]
    ]


def test_time_range(analysis, think):
    with time_machine.travel(timezone.now() - timedelta(hours=3), tick=False):
        old = _bc(analysis, "issue_pattern", issue_payload(location="old.py::f"))
    new = _bc(analysis, "issue_pattern", issue_payload(location="new.py::f"))
    since = (timezone.now() - timedelta(hours=1)).isoformat()
    assert ids(think.client.get("/api/knowledge/query", {"created_after": since})) == [new]
    assert ids(think.client.get("/api/knowledge/query", {"created_before": since})) == [old]


def test_target_filter_and_visibility(analysis, think, dream):
    for_think = _bc(analysis, "issue_pattern", issue_payload(location="t.py::f"), targets=["think"])
    public = _bc(analysis, "issue_pattern", issue_payload(location="p.py::f"))
    assert ids(think.client.get("/api/knowledge/query", {"target": "think"})) == [for_think]
    assert set(ids(think.client.get("/api/knowledge/query"))) == {for_think, public}
    # dream is not a target: it never sees the item, by query or by id
    assert ids(dream.client.get("/api/knowledge/query")) == [public]
    assert dream.client.get(f"/api/knowledge/items/{for_think}").status_code == 404
    assert think.client.get(f"/api/knowledge/items/{for_think}").status_code == 200


def test_min_freshness_respects_each_type_decay_at_boundaries(analysis, recall, think):
    """context_enrichment decays in 6 h, issue_pattern in 5 d: one threshold, two ages."""
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        ctx = _bc(
            recall, "context_enrichment", {"target": "a.py::f", "aspect": "churn", "value": "high"}
        )
        issue = _bc(analysis, "issue_pattern", issue_payload())
    f = 0.5
    ctx_limit = -math.log(f) * 6 * 3600  # ~4.16 h
    issue_limit = -math.log(f) * 5 * 86400  # ~3.47 d
    query = {"types": "context_enrichment,issue_pattern", "min_freshness": f}
    with time_machine.travel(start + timedelta(seconds=ctx_limit - 1), tick=False):
        assert set(ids(think.client.get("/api/knowledge/query", query))) == {ctx, issue}
    with time_machine.travel(start + timedelta(seconds=ctx_limit + 1), tick=False):
        assert ids(think.client.get("/api/knowledge/query", query)) == [issue]
    with time_machine.travel(start + timedelta(seconds=issue_limit - 1), tick=False):
        r = think.client.get("/api/knowledge/query", query)
        assert ids(r) == [issue]
        assert r.json()["results"][0]["freshness"] == pytest.approx(0.5, abs=1e-4)
    with time_machine.travel(start + timedelta(seconds=issue_limit + 1), tick=False):
        assert ids(think.client.get("/api/knowledge/query", query)) == []


def test_sort_by_freshness_across_types(analysis, recall, think):
    """A 3 h old context item (6 h decay) is staler than a 1 d old issue (5 d decay)."""
    now = timezone.now()
    with time_machine.travel(now - timedelta(hours=3), tick=False):
        ctx = _bc(
            recall, "context_enrichment", {"target": "a.py::f", "aspect": "churn", "value": "high"}
        )
    with time_machine.travel(now - timedelta(days=1), tick=False):
        issue = _bc(analysis, "issue_pattern", issue_payload())
    with time_machine.travel(now, tick=False):
        r = think.client.get("/api/knowledge/query", {"sort": "-freshness"})
        assert ids(r) == [issue, ctx]
        fresh = [i["freshness"] for i in r.json()["results"]]
        assert fresh == sorted(fresh, reverse=True)
        assert ids(think.client.get("/api/knowledge/query", {"sort": "freshness"})) == [ctx, issue]
        # by time alone the order is the other way round
        assert ids(think.client.get("/api/knowledge/query", {"sort": "-observed_at"})) == [
            ctx,
            issue,
        ]


@pytest.mark.parametrize(
    "sort", ["-freshness", "freshness", "-created_at", "confidence", "-urgency"]
)
def test_cursor_pagination_visits_every_item_once(analysis, think, sort):
    created = set()
    for i in range(23):
        created.add(
            _bc(
                analysis,
                "issue_pattern",
                issue_payload(location=f"m{i}.py::f"),
                confidence=(i % 5) / 5,
                urgency=["low", "normal", "high"][i % 3],
            )
        )
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 5, "sort": sort}
        if cursor:
            params["cursor"] = cursor
        body = think.client.get("/api/knowledge/query", params).json()
        seen.extend(i["id"] for i in body["results"])
        pages += 1
        cursor = body["next"]
        if not cursor:
            break
    assert pages == 5
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == created


def test_query_counts_are_bounded(analysis, think, django_assert_max_num_queries):
    for i in range(30):
        _bc(
            analysis,
            "issue_pattern",
            issue_payload(location=f"q{i}.py::f"),
            targets=["think"] if i % 2 else [],
        )
    with django_assert_max_num_queries(6):
        r = think.client.get("/api/knowledge/query", {"limit": 30})
    assert len(r.json()["results"]) == 30


@pytest.mark.parametrize(
    "params, field",
    [
        ({"types": "nope"}, "types"),
        ({"min_freshness": "2"}, "min_freshness"),
        ({"min_freshness": "nan"}, "min_freshness"),
        ({"min_confidence": "x"}, "min_confidence"),
        ({"urgency": "asap"}, "urgency"),
        ({"sort": "size"}, "sort"),
        ({"limit": "0"}, "limit"),
        ({"limit": "100000"}, "limit"),
        ({"cursor": "!!!"}, "cursor"),
        ({"created_after": "soon"}, "created_after"),
        ({"status": "gone"}, "status"),
        ({"colour": "red"}, "colour"),
        ({"min_confidence": "0.9", "max_confidence": "0.1"}, "min_confidence"),
    ],
)
def test_bad_filters_are_400_naming_the_field(think, params, field):
    r = think.client.get("/api/knowledge/query", params)
    assert r.status_code == 400, r.content
    assert any(k.startswith(field) for k in r.json()["errors"]), r.json()


def test_post_query_body_must_be_object(think):
    r = think.client.post("/api/knowledge/query", [1, 2], format="json")
    assert r.status_code == 400


@pytest.mark.django_db(transaction=True)  # invalidation runs on commit: needs real commits
def test_cached_query_sees_writers_own_write(analysis, settings):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "cache_enabled": True}
    first = analysis.client.get("/api/knowledge/query", {"types": "issue_pattern"}).json()
    again = analysis.client.get("/api/knowledge/query", {"types": "issue_pattern"}).json()
    assert first["cached"] is False and again["cached"] is True
    new = _bc(analysis, "issue_pattern", issue_payload())
    after = analysis.client.get("/api/knowledge/query", {"types": "issue_pattern"}).json()
    assert after["cached"] is False
    assert [i["id"] for i in after["results"]] == [new]
