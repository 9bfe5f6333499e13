"""PostgreSQL plans: the typical queries read the knowledge table through its indexes.

40,000 items are loaded with COPY (the bench's seeder) and ANALYZEd, so the planner
chooses freely (no ``enable_seqscan=off``); every statement the query layer runs against
the knowledge table is EXPLAINed and must not contain a sequential scan of it.
"""

from __future__ import annotations

import io
import json

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.seed import COLUMNS, rows
from identity.actions import do_create_worker
from knowledge.query import KnowledgeQuery, run_query
from knowledge.registry import registry

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not settings.IS_POSTGRES, reason="query plans are a PostgreSQL matter"),
]

TABLE = "knowledge_knowledgeitem"
ROWS = 40_000


@pytest.fixture
def loaded():
    workers = {
        n: do_create_worker(n)[0] for n in ("think", "analysis", "learning", "dream", "recall")
    }
    import time

    data = io.StringIO(
        "".join(rows(ROWS, [w.pk for w in workers.values()], time.time(), start_id=1))
    )
    raw = connection.connection  # psycopg 3
    with raw.cursor() as cur:
        with cur.copy(f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            copy.write(data.getvalue())
        cur.execute(f"SELECT setval(pg_get_serial_sequence('{TABLE}', 'id'), {ROWS})")
        cur.execute(f"ANALYZE {TABLE}")
    return workers


@pytest.fixture(autouse=True)
def words_always(settings):
    """These tests check the words' plan: free text reads the words at any table size here
    (the default reads the trigram index below ``search_words_min_rows``; see
    ``test_a_small_table_reads_the_trigram_index`` and knowledge/tests/test_search_routing.py)."""
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "search_words_min_rows": 0}


def plan_nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def explain(sql: str) -> list[dict]:
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (FORMAT JSON) " + sql)
        raw = cur.fetchone()[0]
    plan = raw if isinstance(raw, list) else json.loads(raw)
    return list(plan_nodes(plan[0]["Plan"]))


TYPICAL = {
    "one type + min_freshness": (
        lambda w: KnowledgeQuery(types=["issue_pattern"], min_freshness=0.5),
        None,
    ),
    "several types by freshness": (
        lambda w: KnowledgeQuery(types=["risk_pattern", "issue_pattern", "learned_pattern"]),
        None,
    ),
    "source + urgency": (lambda w: KnowledgeQuery(sources=["analysis"], urgencies=[3]), None),
    "free text on subject": (lambda w: KnowledgeQuery(q="mod0042"), None),
    "a worker's relevant knowledge": (
        lambda w: KnowledgeQuery(types=sorted(registry.interests_of("think")), min_freshness=0.3),
        "think",
    ),
}


def test_typical_queries_use_indexes_on_the_knowledge_table(loaded):
    for name, (make, viewer) in TYPICAL.items():
        with CaptureQueriesContext(connection) as ctx:
            result = run_query(make(loaded), loaded[viewer] if viewer else None)
        assert result["results"], f"{name}: the seeded data must match"
        statements = [
            q["sql"]
            for q in ctx.captured_queries
            if TABLE in q["sql"] and not q["sql"].startswith("EXPLAIN")  # query._few_matches
        ]
        assert statements
        for sql in statements:
            nodes = [n for n in explain(sql) if n.get("Relation Name") == TABLE]
            kinds = {n["Node Type"] for n in nodes}
            assert "Seq Scan" not in kinds, f"{name}: sequential scan of {TABLE}:\n{sql}"
            assert kinds & {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}, (name, kinds)


def test_free_text_reads_the_words_index_not_the_trigram_posting_lists(loaded):
    """``q=modNNNN``: every subject holds the trigrams of ``mod`` and of digit triples, so a
    trigram scan decodes posting lists of most of the table; the words index reads only the
    rows holding a word that contains the term (knowledge/search.py)."""
    with CaptureQueriesContext(connection) as ctx:
        result = run_query(KnowledgeQuery(q="mod0042"), None)
    assert result["results"]
    [sql] = [q["sql"] for q in ctx.captured_queries if TABLE in q["sql"]]
    used = {n.get("Index Name") for n in explain(sql)}
    assert "ki_subject_words" in used and "ki_subject_trgm" not in used, used


def test_the_vocabulary_look_up_reads_the_suffix_index_not_every_word(loaded):
    """The words containing the term's run are found with a prefix query on the suffixes of
    every word (``ksw_word_suffixes``, migration 0011), not by testing ``LIKE '%RUN%'`` on
    every word or decoding the trigram posting lists of ``MOD`` and digit triples."""
    with connection.cursor() as cur:
        cur.execute("ANALYZE knowledge_subjectword")
    with CaptureQueriesContext(connection) as ctx:
        result = run_query(KnowledgeQuery(q="od004"), None)
    assert result["results"]
    [sql] = [q["sql"] for q in ctx.captured_queries if TABLE in q["sql"]]
    nodes = [n for n in explain(sql) if n.get("Relation Name") == "knowledge_subjectword"]
    assert nodes and "Seq Scan" not in {n["Node Type"] for n in nodes}, nodes
    used = {n.get("Index Name") for n in explain(sql)}
    assert "ksw_word_suffixes" in used, used


def test_new_words_go_straight_into_the_suffix_index():
    """No GIN pending list on the vocabulary's index: every search would scan the words
    added since the last vacuum (all of them after seeding: ~5 ms per search at 10,000 items)."""
    with connection.cursor() as cur:
        cur.execute("SELECT reloptions FROM pg_class WHERE relname = 'ksw_word_suffixes'")
        assert cur.fetchone()[0] == ["fastupdate=off"]


def test_the_items_words_index_keeps_a_short_pending_list():
    """Every search reads the GIN pending list of ``ki_subject_words`` whole: 256 kB at most
    (PostgreSQL's default, 4 MB, cost 8-17 ms per search at 1M items after 16,000 inserts)."""
    with connection.cursor() as cur:
        cur.execute("SELECT reloptions FROM pg_class WHERE relname = 'ki_subject_words'")
        assert cur.fetchone()[0] == ["gin_pending_list_limit=256"]


def test_the_check_catches_a_sequential_scan(loaded):
    """Without its index, the free-text search scans the table, and the check sees it."""
    with connection.cursor() as cur:
        cur.execute("DROP INDEX ki_subject_words")
    with CaptureQueriesContext(connection) as ctx:
        run_query(KnowledgeQuery(q="mod0042"), None)
    [sql] = [q["sql"] for q in ctx.captured_queries if TABLE in q["sql"]]
    assert "Seq Scan" in {n["Node Type"] for n in explain(sql) if n.get("Relation Name") == TABLE}
