"""Free text (``q``) on PostgreSQL: the subject's words on a large table, the trigram index on
a small one, where the trigram scan is cheaper (``search_words_min_rows``; docs/performance.md,
"Free text: words or trigrams"). Both find the same items."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conftest import risk_payload
from knowledge import search
from knowledge.query import KnowledgeQuery, run_query

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not django_settings.IS_POSTGRES, reason="the words are PostgreSQL's"),
]


def search_sql(term: str) -> tuple[list[int], str]:
    with CaptureQueriesContext(connection) as ctx:
        result = run_query(KnowledgeQuery(q=term), None)
    [sql] = [q["sql"] for q in ctx.captured_queries if "ORDER BY" in q["sql"]]
    return [item["id"] for item in result["results"]], sql


@pytest.mark.parametrize("term", ["mod0042", "MOD0042 |", "0042 | x"])
def test_the_table_size_picks_the_index_and_both_find_the_same_items(analysis, settings, term):
    for pattern in ("mod0042 fails", "the xMOD00421 case", "mod0043", "MOD0042 | x"):
        assert analysis.broadcast("risk_pattern", risk_payload(pattern)).status_code == 201
    search._rows_memo.clear()
    with connection.cursor() as cur:
        cur.execute("ANALYZE knowledge_knowledgeitem")
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "search_words_min_rows": 1000}
    small, small_sql = search_sql(term)
    assert "knowledge_subjectword" not in small_sql  # a few rows: the trigram index
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "search_words_min_rows": 0}
    large, large_sql = search_sql(term)
    assert "knowledge_subjectword" in large_sql
    assert small == large and small
