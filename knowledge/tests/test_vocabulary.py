"""The free-text vocabulary is kept by the writer for a bulk and by the trigger otherwise
(migration 0013, ``knowledge.search.add_words``; docs/performance.md, "Bulk ingest: the
vocabulary from the bulk"). Either way it holds exactly the words of every stored item, and a
bulk's items are found by free text as soon as they are committed."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.db import connection, transaction

from conftest import risk_payload
from knowledge import search
from knowledge.models import KnowledgeItem
from knowledge.query import KnowledgeQuery, run_query

pytestmark = pytest.mark.django_db
postgres_only = pytest.mark.skipif(
    not django_settings.IS_POSTGRES, reason="the vocabulary is PostgreSQL's"
)

# ASCII punctuation and digits, and subjects whose words only the database may split
# (Python's ``upper`` maps ß to SS and ﬀ to FF; the database's does not).
PATTERNS = [
    "src/pkg001/Mod0042.py::fn123 fails",
    "Straße an der mod0043",
    "ﬀ ligature in zz_q9",
    "café 42 déjà-vu",
    "ıi dotless in Turkish tr77",
]


def vocabulary() -> list[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT word FROM knowledge_subjectword ORDER BY word")
        return [row[0] for row in cur.fetchall()]


def words_of_items() -> list[str]:
    """The items' words as the ``ki_subject_words`` index computes them."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT w FROM knowledge_knowledgeitem, "
            f"unnest({search.words_sql('knowledge_knowledgeitem')}) AS w WHERE w <> '' ORDER BY w"
        )
        return [row[0] for row in cur.fetchall()]


def bulk(persona, patterns):
    items = [
        {"knowledge_type": "risk_pattern", "payload": risk_payload(p), "confidence": 0.7}
        for p in patterns
    ]
    r = persona.client.post("/api/knowledge/broadcast/bulk", {"items": items}, format="json")
    assert r.status_code == 200 and r.json()["stored"] == len(patterns), r.json()
    return r.json()


def new_item(worker, subject: str) -> KnowledgeItem:
    return KnowledgeItem(
        knowledge_type="risk_pattern",
        source=worker,
        subject=subject,
        claim="high",
        payload={},
        confidence=0.5,
    )


@postgres_only
def test_a_bulk_adds_exactly_the_words_of_its_items_and_each_is_found(analysis, settings):
    bulk(analysis, PATTERNS)
    assert vocabulary() == words_of_items()  # no word missing, none twice
    assert "STRA" in vocabulary() and "STRASSE" not in vocabulary()
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "search_words_min_rows": 0}
    for term, pattern in [
        ("mod0042", PATTERNS[0]),
        ("straße", PATTERNS[1]),
        ("zz_q9", PATTERNS[2]),
        ("déjà", PATTERNS[3]),
        ("tr77", PATTERNS[4]),
    ]:
        found = run_query(KnowledgeQuery(q=term), None)["results"]
        assert [item["payload"]["pattern"] for item in found] == [pattern], term

    bulk(analysis, ["again mod0042 and new99 word", "second NEW99 word, once"])
    assert vocabulary() == words_of_items()


@postgres_only
def test_the_trigger_skips_the_one_statement_whose_words_were_added(analysis):
    """``add_words`` covers the next insert only: the trigger consumes its flag."""
    with transaction.atomic():
        search.add_words(["alpha1 beta2", "alpha1 gamma3"])
        KnowledgeItem.objects.bulk_create(  # the statement it covers: nothing added by it
            [new_item(analysis.worker, "alpha1 beta2"), new_item(analysis.worker, "skipped9")]
        )
        assert vocabulary() == ["ALPHA1", "BETA2", "GAMMA3"]
        KnowledgeItem.objects.bulk_create(  # the next insert: the trigger again
            [new_item(analysis.worker, "delta4"), new_item(analysis.worker, "alpha1 eps5")]
        )
        assert vocabulary() == ["ALPHA1", "BETA2", "DELTA4", "EPS5", "GAMMA3"]


@postgres_only
def test_a_rolled_back_savepoint_takes_the_flag_back_with_the_words(analysis):
    with transaction.atomic():
        try:
            with transaction.atomic():
                search.add_words(["lost1"])
                raise RuntimeError("the insert failed")
        except RuntimeError:
            pass
        KnowledgeItem.objects.bulk_create([new_item(analysis.worker, "kept2 words3")])
        assert vocabulary() == ["KEPT2", "WORDS3"]


def test_a_bulk_is_stored_and_searchable_on_either_backend(analysis):
    bulk(analysis, PATTERNS)
    found = run_query(KnowledgeQuery(q="mod0043"), None)["results"]
    assert [item["payload"]["pattern"] for item in found] == [PATTERNS[1]]
