"""Bulk ingest through COPY (knowledge/copy_insert.py) and lean bulk answers."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from conftest import issue_payload
from knowledge.copy_insert import MIN_ROWS, copy_insert
from knowledge.models import Event, IdempotencyRecord, KnowledgeItem, KnowledgeTarget

pytestmark = pytest.mark.django_db


def issue(location, **extra):
    return {
        "knowledge_type": "issue_pattern",
        "payload": issue_payload(location=location),
        "confidence": 0.7,
        **extra,
    }


def post_bulk(persona, body):
    r = persona.client.post("/api/knowledge/broadcast/bulk", body, format="json")
    assert r.status_code == 200, r.json()
    return r.json()


def test_a_large_run_is_stored_whole_with_targets_events_and_idempotency(analysis, think):
    n = MIN_ROWS * 3
    items = [
        issue(f"m{i}.py::f", idempotency_key=f"k{i}", **({"targets": ["think"]} if i % 2 else {}))
        for i in range(n)
    ]
    with CaptureQueriesContext(connection) as ctx:
        body = post_bulk(analysis, {"items": items})
    assert body["stored"] == n
    draws = [q for q in ctx.captured_queries if "generate_series" in q["sql"]]
    # PostgreSQL: ids drawn for COPY (items, targets, idempotency records); else bulk_create
    assert len(draws) == (3 if connection.vendor == "postgresql" else 0)
    ids = [r["result"]["item"]["id"] for r in body["results"]]
    assert len(set(ids)) == n
    stored = {i.pk: i for i in KnowledgeItem.objects.filter(pk__in=ids)}
    assert sorted(stored) == sorted(ids)
    first = stored[ids[1]]
    assert first.payload == issue_payload(location="m1.py::f") and first.target_names == ["think"]
    assert first.source.name == "analysis" and first.confidence == 0.7
    assert KnowledgeTarget.objects.filter(item_id__in=ids).count() == n // 2
    assert IdempotencyRecord.objects.filter(item_id__in=ids).count() == n
    events = Event.objects.filter(kind="knowledge_broadcast").order_by("seq")
    assert [e.item_id for e in events] == ids
    # a retry answers the first results, nothing new is written
    again = post_bulk(analysis, {"items": items})
    assert [r["result"]["item"]["id"] for r in again["results"]] == ids
    assert all(r["result"]["replayed"] for r in again["results"])
    assert KnowledgeItem.objects.count() == n
    # the sequence moved on: a later item gets a new id
    later = post_bulk(analysis, {"items": [issue("later.py::f")]})
    assert later["results"][0]["result"]["item"]["id"] > max(ids)


def test_lean_answer_has_ids_and_outcomes_only(analysis):
    items = [issue(f"m{i}.py::f") for i in range(MIN_ROWS + 5)]
    items[3] = {"knowledge_type": "issue_pattern", "payload": {"rule": 1}, "confidence": 0.7}
    body = post_bulk(analysis, {"items": items, "lean": True})
    assert body["stored"] == len(items) - 1 and body["rejected"] == 1
    rejected = body["results"][3]
    assert rejected["status"] == 400 and "payload" in str(rejected["errors"])
    stored = [r for r in body["results"] if r["status"] == 201]
    assert all(
        set(r) == {"index", "status", "id", "outcome", "conflicts", "replayed"} for r in stored
    )
    assert {r["outcome"] for r in stored} == {"created"}
    assert sorted(KnowledgeItem.objects.values_list("id", flat=True)) == sorted(
        r["id"] for r in stored
    )
    # the same items again: the source's own items are refreshed, with the same ids
    items.pop(3)
    again = post_bulk(analysis, {"items": items, "lean": True})
    assert [r["outcome"] for r in again["results"]] == ["refreshed"] * len(items)
    assert [r["id"] for r in again["results"]] == [r["id"] for r in stored]


def test_lean_must_be_a_boolean(analysis):
    r = analysis.client.post(
        "/api/knowledge/broadcast/bulk",
        {"items": [issue("a.py::f")], "lean": "maybe"},
        format="json",
    )
    assert r.status_code == 400 and "lean" in r.json()["errors"]


def test_a_failing_row_fails_the_whole_copy(analysis):
    rows = [
        KnowledgeItem(
            knowledge_type="issue_pattern",
            source=analysis.worker,
            subject=f"s{i}",
            claim="c",
            payload={},
            confidence=0.5 if i != MIN_ROWS else 2.0,  # breaks ki_confidence_0_1
        )
        for i in range(MIN_ROWS + 1)
    ]
    with pytest.raises(IntegrityError), transaction.atomic():
        copy_insert(KnowledgeItem, rows)
    assert KnowledgeItem.objects.count() == 0
