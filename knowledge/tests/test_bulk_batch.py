"""Bulk broadcast writes in batches yet keeps the one-by-one semantics per item."""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from conftest import issue_payload, wait_for_lock_waiter
from identity.actions import do_create_worker
from identity.models import Worker
from knowledge.actions import BroadcastInput, BroadcastResult, do_broadcast_many
from knowledge.errors import ActionError
from knowledge.models import Event, IdempotencyRecord, KnowledgeItem, KnowledgeTarget

pytestmark = pytest.mark.django_db


def bulk(persona, items):
    r = persona.client.post("/api/knowledge/broadcast/bulk", {"items": items}, format="json")
    assert r.status_code == 200, r.json()
    return r.json()


def issue(location, severity="high", **extra):
    return {
        "knowledge_type": "issue_pattern",
        "payload": issue_payload(location=location, severity=severity),
        "confidence": 0.7,
        **extra,
    }


def test_bulk_stores_each_item_with_one_event_each_in_few_queries(analysis):
    items = [issue(f"m{i}.py::f") for i in range(60)]
    with CaptureQueriesContext(connection) as ctx:
        body = bulk(analysis, items)
    assert body["stored"] == 60 and body["rejected"] == 0
    ids = [r["result"]["item"]["id"] for r in body["results"]]
    assert [r["result"]["outcome"] for r in body["results"]] == ["created"] * 60
    events = list(Event.objects.filter(kind="knowledge_broadcast").order_by("seq"))
    assert [e.item_id for e in events] == ids  # one per item, in input order
    assert events[0].data["item"]["subject"] == "long_function | m0.py::f"
    assert len(ctx.captured_queries) < 25  # one by one this was ~7 per item


def test_a_rejected_item_leaves_nothing_and_does_not_stop_the_others(analysis):
    items = [
        issue("a.py::f"),
        {"knowledge_type": "issue_pattern", "payload": {"rule": "x"}, "confidence": 0.5},
        issue("b.py::g"),
    ]
    body = bulk(analysis, items)
    assert [r["status"] for r in body["results"]] == [201, 400, 201]
    assert "payload.location" in body["results"][1]["errors"]
    assert KnowledgeItem.objects.count() == 2 and Event.objects.count() == 2


def test_same_subject_twice_refreshes_or_revises_like_one_by_one(analysis):
    body = bulk(analysis, [issue("a.py::f"), issue("a.py::f"), issue("a.py::f", severity="low")])
    outcomes = [r["result"]["outcome"] for r in body["results"]]
    assert outcomes == ["created", "refreshed", "revised"]
    first, second, third = (r["result"]["item"]["id"] for r in body["results"])
    assert first == second != third
    old = KnowledgeItem.objects.get(pk=first)
    assert (old.status, old.superseded_by_id, old.refresh_count) == ("superseded", third, 1)
    assert KnowledgeItem.objects.filter(status="active").count() == 1
    assert Event.objects.get(item_id=third).data["supersedes"] == first


def test_bulk_refreshes_and_revises_the_sources_existing_items(analysis):
    bulk(analysis, [issue("a.py::f"), issue("b.py::g")])
    body = bulk(analysis, [issue("a.py::f"), issue("b.py::g", severity="low"), issue("c.py::h")])
    assert [r["result"]["outcome"] for r in body["results"]] == ["refreshed", "revised", "created"]
    assert KnowledgeItem.objects.filter(status="active").count() == 3


def test_idempotency_keys_replay_and_reject_a_changed_body(analysis):
    items = [issue(f"m{i}.py::f", idempotency_key=f"k{i}") for i in range(5)]
    first = bulk(analysis, items)
    events = Event.objects.count()
    again = bulk(analysis, [*items[:4], issue("changed.py::f", idempotency_key="k4")])
    assert [r["status"] for r in again["results"]] == [200, 200, 200, 200, 422]
    assert all(r["result"]["replayed"] for r in again["results"][:4])
    assert [r["result"]["item"]["id"] for r in again["results"][:4]] == [
        r["result"]["item"]["id"] for r in first["results"][:4]
    ]
    assert Event.objects.count() == events and IdempotencyRecord.objects.count() == 5


def test_conflict_detection_runs_for_bulk_items_and_its_ids_reach_the_event(analysis, think):
    """A bulk item contradicting another source's item raises a conflict (real detection);
    an item alone on its subject raises none."""
    from conflicts.models import Conflict

    r = think.broadcast(
        "issue_pattern", {"rule": "long_function", "location": "a.py::f", "severity": "low"}
    )
    assert r.status_code == 201
    body = bulk(analysis, [issue("a.py::f"), issue("b.py::g")])  # severity high on a.py::f
    first, second = body["results"]
    assert second["result"]["conflicts"] == []
    [conflict_id] = first["result"]["conflicts"]
    conflict = Conflict.objects.get(pk=conflict_id)
    assert conflict.subject == "long_function | a.py::f"
    assert Event.objects.get(
        item_id=first["result"]["item"]["id"], kind="knowledge_broadcast"
    ).data["conflicts"] == [conflict_id]
    assert Event.objects.filter(kind="conflict_detected").count() == 1


def inputs(*locations, **extra) -> list[BroadcastInput]:
    return [
        BroadcastInput("issue_pattern", issue_payload(location=loc), 0.7, **extra)
        for loc in locations
    ]


def gone_worker() -> Worker:
    """A target worker that passed validation and is deleted before storage: the database
    refuses its target link (a foreign key, checked when the transaction commits), which no
    validation can see."""
    ghost, _ = do_create_worker("ghost")
    Worker.objects.filter(pk=ghost.pk).delete()
    return ghost


@pytest.mark.django_db(transaction=True)
def test_an_item_failing_inside_the_batch_is_rejected_alone(analysis):
    [bad] = inputs("bad.py::f", targets=[gone_worker()])
    results = do_broadcast_many(analysis.worker, [*inputs("a.py::f"), bad, *inputs("c.py::h")])
    assert [r.status if isinstance(r, ActionError) else r.outcome for r in results] == [
        "created",
        409,
        "created",
    ]
    assert sorted(KnowledgeItem.objects.values_list("subject", flat=True)) == [
        "long_function | a.py::f",
        "long_function | c.py::h",
    ]
    assert Event.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_storage_failure_in_a_later_chunk_keeps_every_items_result(analysis):
    """Issue 9: the bulk path half-wrote (first chunk committed, the request a 500, no
    per-item results). Now every item ends stored or rejected with its own reason."""
    [bad] = inputs("bad.py::f", targets=[gone_worker()])
    entries = [*inputs("a.py::f", "b.py::g"), bad, *inputs("d.py::h")]
    results = do_broadcast_many(analysis.worker, entries, chunk_size=2)
    assert len(results) == 4
    assert isinstance(results[2], ActionError) and results[2].status == 409
    stored = [r for r in results if isinstance(r, BroadcastResult)]
    assert [r.outcome for r in stored] == ["created"] * 3
    assert sorted(KnowledgeItem.objects.values_list("id", flat=True)) == sorted(
        r.item.pk for r in stored
    )
    assert sorted(Event.objects.values_list("item_id", flat=True)) == sorted(
        r.item.pk for r in stored
    )


def test_targeted_items_in_a_bulk(analysis, think):
    body = bulk(analysis, [issue("a.py::f", targets=["think"]), issue("b.py::g")])
    targeted = body["results"][0]["result"]["item"]["id"]
    assert list(KnowledgeTarget.objects.values_list("item_id", "worker__name")) == [
        (targeted, "think")
    ]
    assert sorted(Event.objects.get(item_id=targeted).targets) == ["analysis", "think"]


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="observes lock waits in pg_stat_activity")
@pytest.mark.django_db(transaction=True)
def test_a_bulk_request_whose_target_is_deleted_meanwhile_answers_per_item(analysis):
    """Issue 9: an item that fails at storage time (not validation) turned the bulk request
    into a 500. A concurrent transaction holds one of the source's items and deletes a
    target worker; the request validates (the target still exists for it), waits for the
    item, then stores: the target's item is rejected in its result, the others stored."""
    own = bulk(analysis, [issue("a.py::f")])["results"][0]["result"]["item"]["id"]
    do_create_worker("ghost")
    holding, release = threading.Event(), threading.Event()

    def delete_target_while_holding_the_source():
        try:
            with transaction.atomic():
                KnowledgeItem.objects.select_for_update().get(pk=own)
                Worker.objects.filter(name="ghost").delete()
                holding.set()
                release.wait(30)
        finally:
            connections.close_all()

    other = threading.Thread(target=delete_target_while_holding_the_source)
    other.start()
    assert holding.wait(30)
    response = {}

    def post():
        try:
            items = [issue("a.py::f"), issue("bad.py::f", targets=["ghost"]), issue("c.py::h")]
            r = analysis.client.post(
                "/api/knowledge/broadcast/bulk", {"items": items}, format="json"
            )
            response["status"], response["body"] = r.status_code, r.json()
        finally:
            connections.close_all()

    request = threading.Thread(target=post)
    request.start()
    waiting = wait_for_lock_waiter()
    release.set()
    other.join(30)
    request.join(60)
    assert waiting, "the bulk request never waited for the source's item"
    assert response.get("status") == 200, response  # old code: an IntegrityError, no answer
    assert [r["status"] for r in response["body"]["results"]] == [200, 409, 201], response
    assert sorted(KnowledgeItem.objects.values_list("subject", flat=True)) == [
        "long_function | a.py::f",
        "long_function | c.py::h",
    ]
    assert Event.objects.count() == 3  # the first broadcast, the refresh, c.py
