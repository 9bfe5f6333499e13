"""The fast query paths return exactly what the plain definition says.

On PostgreSQL freshness order across types is a per-type UNION ALL merge; on SQLite a
single statement. Both must equal the reference: every matching item sorted by
(freshness, id) descending, paged by cursor without gaps or repeats.
"""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from identity.actions import do_create_worker
from knowledge.models import KnowledgeItem
from knowledge.query import Cursor, KnowledgeQuery, run_query
from knowledge.registry import registry

pytestmark = pytest.mark.django_db


@pytest.fixture
def corpus():
    """300 items over the ten types, three sources, four urgencies, ages up to 20 days."""
    rng = random.Random(5)
    sources = [do_create_worker(n)[0] for n in ("think", "analysis", "learning")]
    now = timezone.now()
    items = []
    for i in range(300):
        t = registry.names()[i % 10]
        observed = now - timedelta(seconds=rng.uniform(0, 20 * 86400))
        items.append(
            KnowledgeItem(
                knowledge_type=t,
                source=sources[i % 3],
                subject=f"mod{i % 7:04d} item {i}",
                claim="x",
                payload={},
                confidence=0.5,
                urgency=1 + i % 4,
                status="active" if i % 10 else "superseded",
                observed_at=observed,
                observed_ts=observed.timestamp(),
                created_at=observed,
            )
        )
    KnowledgeItem.objects.bulk_create(items)
    return sources


def reference(qs_filter, min_freshness=0.0):
    now = timezone.now()
    rows = []
    for item in KnowledgeItem.objects.filter(status="active").filter(**qs_filter):
        f = item.freshness(now)
        if f >= min_freshness:
            rows.append((math.log(max(f, 1e-300)), item.pk))
    return [pk for _, pk in sorted(rows, reverse=True)]


def all_pages(query, viewer=None):
    ids, pages = [], 0
    while True:
        result = run_query(query, viewer)
        ids += [item["id"] for item in result["results"]]
        pages += 1
        if not result["next"]:
            return ids, pages
        query.cursor = result["next"]


@pytest.mark.parametrize(
    "query_kwargs, ref_filter, min_freshness",
    [
        (
            {"types": ["risk_pattern", "issue_pattern", "context_enrichment"]},
            {"knowledge_type__in": ["risk_pattern", "issue_pattern", "context_enrichment"]},
            0.0,
        ),
        ({}, {}, 0.0),
        ({"urgencies": [3]}, {"urgency": 3}, 0.0),
        (
            {"types": ["decision_outcome", "pattern_evolution"], "min_freshness": 0.4},
            {"knowledge_type__in": ["decision_outcome", "pattern_evolution"]},
            0.4,
        ),
        ({"q": "MOD0003"}, {"subject__icontains": "mod0003"}, 0.0),
        (
            {"types": ["successful_fix"], "min_freshness": 0.3},
            {"knowledge_type": "successful_fix"},
            0.3,
        ),
    ],
)
def test_freshness_order_and_cursor_pages_match_the_reference(
    corpus, query_kwargs, ref_filter, min_freshness
):
    expected = reference(ref_filter, min_freshness)
    assert expected, "the corpus must match something"
    ids, pages = all_pages(KnowledgeQuery(limit=7, **query_kwargs))
    assert ids == expected
    assert pages == math.ceil(len(expected) / 7) or (
        len(expected) % 7 == 0 and pages == len(expected) // 7 + 1
    )


def test_sources_filter_by_name(corpus):
    think = corpus[0]
    ids, _ = all_pages(KnowledgeQuery(sources=["think"], urgencies=[2], limit=10))
    assert ids == reference({"source": think, "urgency": 2})
    assert run_query(KnowledgeQuery(sources=["nobody"]), None)["results"] == []


def test_one_type_by_freshness_pages_for_a_viewer_match_the_reference(corpus):
    """One type without a minimum freshness, read by a worker (the visibility rule applies):
    every active item of the type, freshest first, across pages."""
    ids, _ = all_pages(KnowledgeQuery(types=["risk_pattern"], limit=4), viewer=corpus[1])
    assert ids == reference({"knowledge_type": "risk_pattern"})


def test_a_one_type_cursor_of_the_orm_path_goes_on_after_its_row(corpus):
    """A cursor handed out before one type took the merge (its key an ``observed_ts``, the
    ORM path's) continues after the row it stopped at: no repeat, no gap."""
    expected = reference({"knowledge_type": "issue_pattern"})
    as_of = timezone.now().timestamp()
    seventh = KnowledgeItem.objects.get(pk=expected[6])
    old = Cursor(key=seventh.observed_ts, id=seventh.pk, as_of=as_of).encode()
    ids, _ = all_pages(KnowledgeQuery(types=["issue_pattern"], limit=5, cursor=old))
    assert ids == expected[7:]


def test_one_type_by_freshness_is_one_hand_written_statement_on_postgresql(corpus):
    """On PostgreSQL a one-type query by freshness runs the merge's statement (one branch),
    not a queryset built and compiled per request (docs/performance.md); SQLite keeps the
    ORM's statement. Both answer the same page."""
    expected = reference({"knowledge_type": "risk_pattern"}, 0.2)
    with CaptureQueriesContext(connection) as ctx:
        result = run_query(KnowledgeQuery(types=["risk_pattern"], min_freshness=0.2), corpus[0])
    assert [item["id"] for item in result["results"]] == expected[:50]
    items = [q["sql"] for q in ctx.captured_queries if "knowledge_knowledgeitem" in q["sql"]]
    assert len(items) == 1  # (the other statement: the viewer's read scope)
    assert ("AS page JOIN" in items[0]) == (connection.vendor == "postgresql")
