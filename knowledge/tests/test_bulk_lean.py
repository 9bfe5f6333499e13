"""Bulk ingest through COPY (knowledge/copy_insert.py) and lean bulk answers."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conftest import issue_payload
from knowledge.actions import IDEMPOTENCY_FIELDS
from knowledge.copy_insert import MIN_ROWS, copy_insert, copy_rows
from knowledge.metrics import BROADCASTS
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
    # PostgreSQL: ids drawn for COPY (items, targets, events, idempotency records); else
    # bulk_create
    assert len(draws) == (4 if connection.vendor == "postgresql" else 0)
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


def without_freshness(item: dict) -> dict:
    return {k: v for k, v in item.items() if k != "freshness"}


@pytest.mark.parametrize("lean", [False, True])
def test_a_copied_bulk_answers_and_logs_each_item_as_stored_and_nothing_of_a_bad_one(
    analysis, think, lean
):
    """A bulk large enough for COPY (items, events, targets, idempotency records): every
    stored item's event and answer show exactly the row that was stored; the bad item is a
    4xx with nothing of it anywhere; a retry is answered from the keys, with no new event."""
    n = MIN_ROWS * 2
    items = [
        issue(f"m{i}.py::f", idempotency_key=f"k{i}", **({"targets": ["think"]} if i % 3 else {}))
        for i in range(n)
    ]
    items[7] = {"knowledge_type": "issue_pattern", "payload": {"rule": "x"}, "confidence": 0.7}
    body = post_bulk(analysis, {"items": items, "lean": lean})
    assert (body["stored"], body["rejected"]) == (n - 1, 1)
    bad = body["results"][7]
    assert bad["status"] == 400 and "payload.location" in bad["errors"]
    stored = [r for r in body["results"] if r["index"] != 7]
    ids = [r["id"] if lean else r["result"]["item"]["id"] for r in stored]
    rows = {i.pk: i for i in KnowledgeItem.objects.select_related("source").filter(pk__in=ids)}
    assert len(rows) == n - 1 == KnowledgeItem.objects.count()
    events = list(Event.objects.filter(kind="knowledge_broadcast").order_by("seq"))
    assert [e.item_id for e in events] == ids  # one each, in input order, none for the bad one
    for answer, event in zip(stored, events, strict=True):
        row = rows[event.item_id]
        expected = without_freshness(row.as_dict())
        assert without_freshness(event.data["item"]) == expected
        assert event.data["outcome"] == "created" and event.data["supersedes"] is None
        assert (event.knowledge_type, event.source) == ("issue_pattern", "analysis")
        assert event.targets == (["think", "analysis"] if row.target_names else [])
        assert event.is_targeted == bool(row.target_names)
        if lean:
            assert (answer["id"], answer["outcome"], answer["status"]) == (row.pk, "created", 201)
        else:
            assert without_freshness(answer["result"]["item"]) == expected
            assert 0.99 < answer["result"]["item"]["freshness"] <= 1.0
    assert IdempotencyRecord.objects.count() == n - 1
    assert not IdempotencyRecord.objects.filter(key="k7").exists()
    assert KnowledgeTarget.objects.count() == sum(1 for r in rows.values() if r.target_names)
    # the same bulk again: every stored item replayed from its key, nothing written
    again = post_bulk(analysis, {"items": items, "lean": lean})
    replayed = [r for r in again["results"] if r["index"] != 7]
    assert [r["id"] if lean else r["result"]["item"]["id"] for r in replayed] == ids
    assert all((r if lean else r["result"])["replayed"] for r in replayed)
    assert Event.objects.count() == len(events) and KnowledgeItem.objects.count() == n - 1


@pytest.mark.parametrize("n", [2, MIN_ROWS + 1])
def test_rows_written_without_instances_are_stored_as_given_or_not_at_all(analysis, n):
    """``copy_rows`` (events and idempotency records of a bulk): tuples in, ids back in
    order, the values stored as a model instance would store them; a failing row fails all
    (COPY on PostgreSQL from MIN_ROWS rows, else bulk_create)."""
    item = KnowledgeItem.objects.create(
        knowledge_type="issue_pattern",
        source=analysis.worker,
        subject="s",
        claim="c",
        payload={},
        confidence=0.5,
    )
    before = timezone.now()
    rows = [
        (analysis.worker.pk, f"k{i}", "h" * 64, item.pk, "created", [i, i + 1]) for i in range(n)
    ]
    ids = copy_rows(IdempotencyRecord, IDEMPOTENCY_FIELDS, rows)
    stored = {r.pk: r for r in IdempotencyRecord.objects.all()}
    assert sorted(stored) == sorted(ids) and len(ids) == n
    for i, pk in enumerate(ids):
        record = stored[pk]
        assert (record.key, record.item_id, record.conflict_ids) == (f"k{i}", item.pk, [i, i + 1])
        assert (record.worker_id, record.outcome) == (analysis.worker.pk, "created")
        assert before <= record.created_at <= timezone.now()  # auto_now_add: stamped
    again = [(analysis.worker.pk, f"new{i}", "h", item.pk, "created", []) for i in range(n)]
    again[-1] = (*again[-1][:1], "k0", *again[-1][2:])  # breaks idem_unique
    with pytest.raises(IntegrityError), transaction.atomic():
        copy_rows(IdempotencyRecord, IDEMPOTENCY_FIELDS, again)
    assert IdempotencyRecord.objects.count() == n


def test_a_bulk_counts_each_stored_item_once(analysis, django_capture_on_commit_callbacks):
    def count(kind, outcome):
        return BROADCASTS.labels(kind, outcome)._value.get()

    before = count("issue_pattern", "created"), count("issue_pattern", "refreshed")
    items = [issue(f"c{i}.py::f") for i in range(MIN_ROWS + 5)]
    with django_capture_on_commit_callbacks(execute=True):
        post_bulk(analysis, {"items": items})
    with django_capture_on_commit_callbacks(execute=True):
        post_bulk(analysis, {"items": items[:3]})  # the same claims again: refreshed
    after = count("issue_pattern", "created"), count("issue_pattern", "refreshed")
    assert after == (before[0] + MIN_ROWS + 5, before[1] + 3)
