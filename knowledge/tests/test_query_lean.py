"""The query's lean paths answer exactly what the model path answered (docs/performance.md).

Query pages are built from column tuples (``ITEM_COLUMNS``), not model instances, and
free text (``q``) goes through the subject's words on PostgreSQL (knowledge/search.py). The
reference here is the model: ``KnowledgeItem.as_dict`` of every row, with the contested
marks, and ``subject__icontains`` with Python's containment for the search.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test import override_settings

from bench.seed import COLUMNS, rows
from conftest import issue_payload, risk_payload
from knowledge import item_hooks
from knowledge.models import KnowledgeItem
from knowledge.search import fill_vocabulary

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def truth_engine():
    """Conflicts wait for review (the marks then say ``contested``)."""
    ke = {**settings.KNOWLEDGE_EXCHANGE, "resolution_strategy": "truth"}
    return override_settings(KNOWLEDGE_EXCHANGE=ke)


def items_of_every_kind(think, analysis, recall) -> list[int]:
    """Targeted, superseded, refreshed, contested, legacy-subject, unicode and big-int items."""
    made = []
    with truth_engine():
        made.append(think.broadcast("risk_pattern", risk_payload(level="high"), 0.8).json())
        made.append(analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.7).json())
    assert made[1]["conflicts"], "the contradiction must raise a conflict"
    made.append(
        think.broadcast(
            "risk_pattern", risk_payload("Naïve cache — ünïcode ✓", "low"), 0.6, targets=["recall"]
        ).json()
    )
    made.append(think.broadcast("decision_outcome", _decision("x.py::f"), 0.55).json())
    made.append(analysis.broadcast("issue_pattern", issue_payload(location="a/b.py::g"), 1).json())
    again = analysis.broadcast("issue_pattern", issue_payload(location="a/b.py::g"), 1)
    assert again.json()["outcome"] == "refreshed"
    made.append(recall.broadcast("context_enrichment", _context("old.py"), 0.9).json())
    ids = [m["item"]["id"] for m in made]
    # Rows as older versions or other paths left them: a superseded item, a subject stored
    # before ``subject_text`` existed, payload integers beyond 64 bits (orjson refuses them or
    # would read them as floats) and floats at the ends of their range.
    KnowledgeItem.objects.filter(pk=ids[3]).update(status="superseded", superseded_by_id=ids[0])
    KnowledgeItem.objects.filter(pk=ids[5]).update(subject_text="")
    KnowledgeItem.objects.filter(pk=ids[4]).update(
        payload={
            **issue_payload(location="a/b.py::g"),
            "metric": 2**70,
            "x": [1.5e-7, None, -(2**63) - 1, 2**64 - 1, 0.1],
            "note": "ticket 12345678901234567890",  # a long digit run inside a string
        }
    )
    return ids


def _decision(proposal: str) -> dict:
    return {"proposal": proposal, "decision": "execute", "predicted_success": 0.4}


def _context(target: str) -> dict:
    return {"target": target, "aspect": "churn", "value": "12"}


def reference(viewer, ids, now) -> dict[int, dict]:
    rows = KnowledgeItem.objects.select_related("source").filter(pk__in=ids)
    if viewer is not None:
        rows = rows.visible_to(viewer)
    return {d["id"]: d for d in item_hooks.mark_items([row.as_dict(now) for row in rows])}


QUERIES = [
    "types=risk_pattern",  # one type (single statement)
    "types=risk_pattern,decision_outcome,issue_pattern,context_enrichment&status=any",  # merge
    "status=any&sort=-created_at",
    "status=any&sort=confidence&limit=2",  # cursor pages
    "q=ong_FUNCTION | a/b.py&status=any",  # free text (through the words on PostgreSQL)
    "q=a&status=any&limit=2",  # free text by freshness, cursor pages
    "q=a&status=any&sort=freshness&limit=3",  # ascending
    "q=a&types=risk_pattern,issue_pattern,context_enrichment&status=any&limit=1",
]


@pytest.mark.parametrize("query", QUERIES)
def test_query_pages_are_the_model_paths_answer_byte_for_byte(query, think, analysis, recall):
    with time_machine.travel(NOW, tick=False):
        ids = items_of_every_kind(think, analysis, recall)
    with time_machine.travel(NOW + timedelta(hours=7), tick=False):
        for persona in (recall, think):
            want = reference(persona.worker, ids, NOW + timedelta(hours=7))
            got, url = [], f"/api/knowledge/query?{query}"
            while url:
                r = persona.client.get(url)
                assert r.status_code == 200, r.content
                page = json.loads(r.content)
                got += page["results"]
                nxt = page["next"]
                url = f"/api/knowledge/query?{query}&cursor={nxt}" if nxt else None
            assert got, query
            for item in got:
                assert json.dumps(item) == json.dumps(want[item["id"]]), item["id"]
            if "status=any" in query and "q=" not in query:
                assert set(ids) <= {item["id"] for item in got}, query
    kinds = {(i["status"], bool(i["targets"]), i.get("contested")) for i in want.values()}
    assert ("superseded", False, False) in kinds and ("active", True, False) in kinds
    assert any(i["contested"] for i in want.values()), "a contested item is compared too"


# --- free text ------------------------------------------------------------------------------

SUBJECTS = [
    "src/pkg001/mod0042.py::fn7",
    "src/pkg001/mod00421.py::fn8",
    "src/pkg002/xmod0042y.py::fn9",
    "lib/MOD0042.PY::FN7",
    "100% cache_hit on Deploy-42",
    "naïve résumé of mod0042",
]
TERMS = [
    "mod0042",  # inside a longer word, at a word's start and end
    "od004",
    "MOD0042.py::fn",  # across punctuation, any case
    "0421.py::fn8",
    "xmod0042y",
    "0% cache_h",  # LIKE's wildcards are plain characters
    "e_h",
    "deploy-42",
    "résumé of",
    "::",  # no letters or digits: the plain path
    "42",  # too short for the words
    "zz9999",  # nothing
    "mod0042.py::fn7x",
]


def _issue(location: str) -> dict:
    return {
        "knowledge_type": "issue_pattern",
        "payload": issue_payload(location=location),
        "confidence": 0.7,
    }


def _search(persona, term: str) -> set[int]:
    r = persona.client.get("/api/knowledge/query", {"q": term, "limit": 200, "status": "any"})
    assert r.status_code == 200, r.content
    return {i["id"] for i in r.json()["results"]}


@pytest.mark.parametrize("words_min_rows", [0, 10**9], ids=["words", "trigram"])
def test_free_text_finds_exactly_the_subjects_containing_the_term(
    analysis, settings, words_min_rows
):
    settings.KNOWLEDGE_EXCHANGE = {
        **settings.KNOWLEDGE_EXCHANGE,
        "search_words_min_rows": words_min_rows,
    }
    # One bulk of more than 20 items (COPY on PostgreSQL) and single broadcasts.
    filler = [_issue(f"pkg/filler{n:03d}.py::f") for n in range(24)]
    body = {"items": [*filler, *(_issue(s) for s in SUBJECTS[:3])]}
    r = analysis.client.post("/api/knowledge/broadcast/bulk", body, format="json")
    assert r.status_code == 200 and r.json()["stored"] == 27, r.content
    for subject in SUBJECTS[3:]:
        assert (
            analysis.broadcast("issue_pattern", issue_payload(location=subject)).status_code == 201
        )
    stored = dict(KnowledgeItem.objects.values_list("pk", "subject"))
    for term in TERMS:
        want = {pk for pk, subject in stored.items() if term.upper() in subject.upper()}
        assert _search(analysis, term) == want, term
    assert _search(analysis, "mod0042") and _search(analysis, "0% cache_h")


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="the vocabulary is PostgreSQL's")
def test_words_reach_the_vocabulary_on_every_write_path(analysis, settings):
    # rows written behind the actions' back invalidate no cached page: no cache here; the
    # words at any table size (a small one is searched through the trigram index otherwise)
    settings.KNOWLEDGE_EXCHANGE = {
        **settings.KNOWLEDGE_EXCHANGE,
        "cache_enabled": False,
        "search_words_min_rows": 0,
    }
    item = analysis.broadcast("issue_pattern", issue_payload(location="first.py::f")).json()
    assert _search(analysis, "first.py") == {item["item"]["id"]}
    # A subject changed in place: the new words are searchable.
    KnowledgeItem.objects.filter(pk=item["item"]["id"]).update(subject="renamed qx7731 | high")
    assert _search(analysis, "qx773") == {item["item"]["id"]}
    # Rows loaded with triggers off (the bench's seeder) are found once their words are added.
    line = next(rows(1, [analysis.worker.pk], NOW.timestamp(), start_id=10_001))
    subject = line.split("\t")[COLUMNS.index("subject")]
    term = subject.split("/")[2].split(".")[0]  # modNNNN
    connection.ensure_connection()
    with connection.connection.cursor() as cur:  # psycopg 3
        cur.execute("SET session_replication_role = replica")
        with cur.copy(f"COPY knowledge_knowledgeitem ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            copy.write(line)
        cur.execute("SET session_replication_role = DEFAULT")
    assert 10_001 not in _search(analysis, term)
    with connection.cursor() as cur:
        fill_vocabulary(cur)
    assert 10_001 in _search(analysis, term)


FREE_TEXT_PAGES = [
    "q=mod0042&limit=2",
    "q=py&status=any&limit=3",
    "q=py&status=any&sort=freshness&limit=4",
    "q=mod0042&types=issue_pattern,risk_pattern&limit=1",
    "q=0% cache_h&status=any",
]


@pytest.mark.parametrize("words_min_rows", [0, 10**9], ids=["words", "trigram"])
def test_free_text_pages_are_the_orm_querysets_pages(
    think, analysis, recall, settings, words_min_rows
):
    """Free text by freshness is one statement written by hand on PostgreSQL
    (``query._one_statement_by_freshness``); it pages through the same items in the same
    order, with the same cursors, as the ORM queryset it replaces
    (product setting ``query_one_statement`` off)."""
    settings.KNOWLEDGE_EXCHANGE = {
        **settings.KNOWLEDGE_EXCHANGE,
        "search_words_min_rows": words_min_rows,
        "cache_enabled": False,
    }
    with time_machine.travel(NOW, tick=False):
        items_of_every_kind(think, analysis, recall)
        body = {"items": [_issue(f"pkg/mod0042_{n:02d}.py::f") for n in range(24)]}
        r = analysis.client.post("/api/knowledge/broadcast/bulk", body, format="json")
        assert r.status_code == 200, r.content
        for subject in SUBJECTS:
            analysis.broadcast("issue_pattern", issue_payload(location=subject))
    with time_machine.travel(NOW + timedelta(hours=3), tick=False):
        for query in FREE_TEXT_PAGES:
            pages = _pages_both_ways(query, (recall, think), settings)
            for name in ("recall", "think"):
                assert pages[(True, name)] == pages[(False, name)], (query, name)
            assert pages[(True, "think")][0][0], query


FEW_MATCHES_PAGES = [
    "sources=analysis&urgency=normal&limit=2",
    "sources=think,analysis&status=any&limit=3",
    "sources=think&status=any&sort=freshness&limit=2",
    "urgency=normal&types=risk_pattern,issue_pattern&limit=1",
]


def test_few_matches_pages_are_the_merges_pages(think, analysis, recall, settings):
    """A source or urgency filter that the planner expects to match few rows is answered by
    one statement sorting them (``query._few_matches``) on PostgreSQL instead of one index
    scan per type: the same items in the same order, with the same cursors."""
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "cache_enabled": False}
    with time_machine.travel(NOW, tick=False):
        items_of_every_kind(think, analysis, recall)
        body = {"items": [_issue(f"pkg/m{n:02d}.py::f") for n in range(12)]}
        r = analysis.client.post("/api/knowledge/broadcast/bulk", body, format="json")
        assert r.status_code == 200, r.content
    with time_machine.travel(NOW + timedelta(hours=3), tick=False):
        for query in FEW_MATCHES_PAGES:
            pages = _pages_both_ways(query, (recall, think), settings)
            for name in ("recall", "think"):
                assert pages[(True, name)] == pages[(False, name)], (query, name)
            assert len(pages[(True, "think")]) > 1, query  # cursor pages


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="SQLite has no per-type branches")
def test_few_matches_are_sorted_in_one_statement_not_one_branch_per_type(think, analysis):
    """Query Q3 on a small table: one statement without a ``UNION ALL`` of ten branches
    (planning those was ~1 ms of its ~2 ms at 10,000 items); a query the planner expects
    to match more than ``ONE_STATEMENT_MAX_ROWS`` rows keeps the branches."""
    from django.test.utils import CaptureQueriesContext

    from knowledge import query as query_module
    from knowledge.query import KnowledgeQuery, run_query

    analysis.broadcast("issue_pattern", issue_payload(location="few.py::f"))
    query = KnowledgeQuery(sources=["analysis"], urgencies=[2])
    query_module._MATCHES_MEMO.clear()
    with CaptureQueriesContext(connection) as ctx:
        assert run_query(query, think.worker)["results"]
    statements = [q["sql"] for q in ctx.captured_queries if "knowledge_knowledgeitem" in q["sql"]]
    assert statements and not any("UNION ALL" in sql for sql in statements), statements
    query_module._MATCHES_MEMO.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(query_module, "ONE_STATEMENT_MAX_ROWS", -1)
        with CaptureQueriesContext(connection) as ctx:
            assert run_query(query, think.worker)["results"]
    assert any("UNION ALL" in q["sql"] for q in ctx.captured_queries)
    query_module._MATCHES_MEMO.clear()


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="SQLite keeps the ORM's queryset")
def test_free_text_by_freshness_compiles_no_orm_query_of_the_items(think, settings):
    """Once a viewer's filters are memoised, another search term builds its statement
    without the ORM (building it was ~2-3 ms per request at 1M items)."""
    from django.db.models.sql.compiler import SQLCompiler

    from knowledge.query import KnowledgeQuery, run_query

    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "search_words_min_rows": 0}
    think.broadcast("risk_pattern", risk_payload("cache mod0042 stale", "high"), 0.8)
    run_query(KnowledgeQuery(q="mod0042"), think.worker)  # the shared WHERE, memoised
    compiled, as_sql = [], SQLCompiler.as_sql

    def spy(self, *args, **kwargs):
        compiled.append(self.query.model)
        return as_sql(self, *args, **kwargs)

    SQLCompiler.as_sql = spy
    try:
        result = run_query(KnowledgeQuery(q="stale"), think.worker)
    finally:
        SQLCompiler.as_sql = as_sql
    assert len(result["results"]) == 1
    assert KnowledgeItem not in compiled, compiled


def _pages_both_ways(query: str, personas, settings) -> dict:
    """(lean, worker name) -> the pages of ``query`` (ids, next cursor), walked to the end
    with the product setting ``query_one_statement`` on and off."""
    pages = {}
    for lean in (True, False):
        settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "query_one_statement": lean}
        for persona in personas:
            got, url = [], f"/api/knowledge/query?{query}"
            while url:
                r = persona.client.get(url)
                assert r.status_code == 200, r.content
                page = json.loads(r.content)
                got.append(([i["id"] for i in page["results"]], page["next"]))
                nxt = page["next"]
                url = f"/api/knowledge/query?{query}&cursor={nxt}" if nxt else None
            pages[(lean, persona.worker.name)] = got
    return pages
