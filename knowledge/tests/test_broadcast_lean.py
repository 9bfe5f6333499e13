"""A single broadcast is a fixed handful of plain statements in fewer round trips (issue 14:
its service time is the 8-client P95; docs/performance.md, "Single broadcast" and "Single
broadcast: queries per request (2026-12-02)").

The common case, a new item on a subject nobody else has claimed, with an idempotency key:
one look for the key, the worker row, the source's own items, the item, the subject's lock
(or the tail lock), one busy check for conflict detection, the event, the key's record.
No statement for conflict detection's reads of the subject's items and conflicts (the busy
check answers "nothing there"). On PostgreSQL a statement that must read after a lock goes
in the lock's round trip (``knowledge.sql.execute_together``): the worker row and the own
items, the subject lock and the busy check, the event with its savepoint (snapshot mode) or
the tail lock (lock mode), whose seq is drawn by the INSERT itself, and the key's record
after it; the key's lookup goes with the worker row's lock (after it: it sees the record of
a request with the same key that held the lock)."""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from conflicts.actions import copy_estimator
from conftest import issue_payload, wait_for_lock_waiter
from identity.models import Worker
from knowledge.actions import BroadcastInput, do_broadcast
from knowledge.choices import ItemStatus
from knowledge.models import Event, KnowledgeItem

pytestmark = pytest.mark.django_db


def statements(fn):
    with CaptureQueriesContext(connection) as ctx:
        result = fn()
    return result, [q["sql"] for q in ctx.captured_queries]


def new_item(location: str, key: str | None = None) -> BroadcastInput:
    return BroadcastInput(
        "issue_pattern", issue_payload(location=location), 0.7, idempotency_key=key
    )


def hold_the_first_then_queue(first, second, never_waited: str):
    """Run ``first`` in a transaction held open, then ``second`` in another thread until it
    waits on a lock the first holds; release the first. Returns (first's, second's) results,
    raising what either thread raised."""
    stored, release, errors, out = threading.Event(), threading.Event(), [], {}

    def hold():
        try:
            with transaction.atomic():
                out["first"] = first()
                stored.set()
                assert release.wait(30)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def queue():
        try:
            out["second"] = second()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    a = threading.Thread(target=hold)
    a.start()
    assert stored.wait(30), errors
    b = threading.Thread(target=queue)
    b.start()
    try:
        assert wait_for_lock_waiter(), never_waited
    finally:
        release.set()
        a.join(30)
        b.join(30)
    assert not errors, errors
    return out["first"], out["second"]


def expected_statements() -> int:
    """The plan above in round trips, per database (the action's own savepoint and release
    included: the test runs inside a transaction). Both orderings take as many."""
    if connection.vendor != "postgresql":
        # key, worker, own items, item, busy, event, record (SQLite: no advisory lock)
        return 2 + 7
    # worker + own items + key, item, lock + busy, event (+ savepoint or tail lock) + record:
    # the key's lookup and its record each went in a round trip of their own before (2 + 6)
    return 2 + 4


def test_a_single_broadcast_on_a_new_subject_is_a_fixed_handful_of_statements(
    analysis, event_ordering
):
    copy_estimator()  # built on first use, once per process: not part of a broadcast
    do_broadcast(analysis.worker, new_item("warm/up.py::f", "k0"))

    result, sqls = statements(lambda: do_broadcast(analysis.worker, new_item("a.py::f", "k1")))

    assert result.outcome == "created" and result.conflict_ids == []
    assert len(sqls) == expected_statements(), "\n".join(sqls)


def test_a_busy_subject_still_gets_the_full_detection(analysis, think):
    do_broadcast(think.worker, new_item("a.py::f"))
    other = BroadcastInput("issue_pattern", issue_payload(location="a.py::f", severity="low"), 0.7)
    result = do_broadcast(analysis.worker, other)
    assert len(result.conflict_ids) == 1


def test_a_retry_with_the_same_key_replays_the_first_result(analysis):
    first = do_broadcast(analysis.worker, new_item("a.py::f", "k1"))
    counted = Worker.objects.get(pk=analysis.worker.pk).broadcast_count
    again = do_broadcast(analysis.worker, new_item("a.py::f", "k1"))
    assert again.replayed and again.item.pk == first.item.pk and again.outcome == "created"
    # The key is found after the worker row's lock and count: both are rolled back.
    assert Worker.objects.get(pk=analysis.worker.pk).broadcast_count == counted
    assert KnowledgeItem.objects.get(pk=first.item.pk).refresh_count == 0


@pytest.mark.django_db(transaction=True)
def test_a_single_broadcast_through_the_api_is_four_round_trips_on_postgresql(
    analysis, event_ordering
):
    """``POST broadcast`` of a new item without a key, as ``make bench`` sends it (its
    ``X-DB-Queries``): 9 statements before, 4 round trips now in either ordering; SQLite,
    which takes no lock and sends one statement at a time, 5."""
    copy_estimator()
    analysis.broadcast("issue_pattern", issue_payload(location="warm/up.py::f"), 0.7)

    with CaptureQueriesContext(connection) as ctx:
        r = analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"), 0.7)

    assert r.status_code == 201 and r.json()["outcome"] == "created"
    sqls = [
        q["sql"]
        for q in ctx.captured_queries
        if not q["sql"].startswith("BEGIN") and q["sql"] != "COMMIT"
    ]
    assert len(sqls) == (4 if connection.vendor == "postgresql" else 5), "\n".join(sqls)
    event = Event.objects.get(item_id=r.json()["item"]["id"])
    assert event.data["item"] == {**r.json()["item"], "freshness": event.data["item"]["freshness"]}


@pytest.mark.django_db(transaction=True)
def test_a_keyed_single_broadcast_through_the_api_is_four_round_trips_on_postgresql(
    analysis, event_ordering
):
    """``POST broadcast`` with an idempotency key, as the SDK sends it: the key's lookup
    goes with the worker row's lock and its record with the event, so it takes no more
    round trips than one without a key (6 before); SQLite, one statement at a time, 7."""
    copy_estimator()
    analysis.broadcast("issue_pattern", issue_payload(location="warm/up.py::f"), 0.7)

    with CaptureQueriesContext(connection) as ctx:
        r = analysis.broadcast(
            "issue_pattern", issue_payload(location="a.py::f"), 0.7, idempotency_key="sdk-1"
        )

    assert r.status_code == 201 and r.json()["outcome"] == "created"
    sqls = [
        q["sql"]
        for q in ctx.captured_queries
        if not q["sql"].startswith("BEGIN") and q["sql"] != "COMMIT"
    ]
    assert len(sqls) == (4 if connection.vendor == "postgresql" else 7), "\n".join(sqls)
    again = analysis.broadcast(
        "issue_pattern", issue_payload(location="a.py::f"), 0.7, idempotency_key="sdk-1"
    )
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["item"]["id"] == r.json()["item"]["id"]


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="real concurrent transactions need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_a_broadcast_queued_on_its_workers_lock_reads_what_the_first_one_committed(
    analysis, event_ordering
):
    """The worker row's lock and the read of the worker's own items share one round trip,
    yet the read still runs after the lock with a snapshot of its own: the second of two
    identical broadcasts, queued behind the first, refreshes the item the first committed
    while it waited (one statement, e.g. a CTE, would read with a snapshot from before the
    wait and store a duplicate)."""

    def second():
        with CaptureQueriesContext(connection) as ctx:
            result = do_broadcast(analysis.worker, new_item("a.py::f"))
        return result, [q["sql"] for q in ctx.captured_queries]

    _, (result, sqls) = hold_the_first_then_queue(
        lambda: do_broadcast(analysis.worker, new_item("a.py::f")),
        second,
        "the second broadcast never waited for the first",
    )
    assert result.outcome == "refreshed"
    active = KnowledgeItem.objects.filter(subject__endswith="a.py::f", status=ItemStatus.ACTIVE)
    assert active.count() == 1
    [lock_and_read] = [sql for sql in sqls if "broadcast_count" in sql]
    assert "FOR NO KEY UPDATE" in lock_and_read  # the same round trip


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="real concurrent transactions need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_a_concurrent_retry_with_the_same_key_answers_the_first_result(analysis, event_ordering):
    """A retry sent while the first request is still open queues on the worker row; its
    key's lookup, in the lock's round trip, runs after the lock with a snapshot of its own,
    finds the record the first one committed meanwhile, and the retry answers with the first
    result, nothing of its own written (its record goes with the event's INSERT: before it,
    a lookup made before the lock missed it, and the record's ``idem_unique`` caught it)."""
    first_result, again = hold_the_first_then_queue(
        lambda: do_broadcast(analysis.worker, new_item("a.py::f", "k1")),
        lambda: do_broadcast(analysis.worker, new_item("a.py::f", "k1")),
        "the retry never waited for the first request",
    )
    assert again.replayed and again.outcome == "created"
    assert again.item.pk == first_result.item.pk
    item = KnowledgeItem.objects.get(pk=first_result.item.pk)
    assert item.refresh_count == 0  # the retry's refresh was rolled back with its record
    assert Event.objects.filter(item_id=item.pk).count() == 1
