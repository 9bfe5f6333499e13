"""The event log: order equals commit order, resumable reads, long poll, retention."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from conftest import (
    PollInThread,
    issue_payload,
    risk_payload,
    wait_for_lock_waiter,
    wait_until_long_poll_parked,
)
from knowledge import actions
from knowledge.actions import BroadcastInput
from knowledge.events import FeedFilter, read_events
from knowledge.models import Event, LogState


def seqs() -> list[int]:
    return list(Event.objects.order_by("seq").values_list("seq", flat=True))


@pytest.mark.django_db(transaction=True)  # readers see committed events only
def test_events_since_returns_later_events_in_order_with_filters(analysis, think):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    think.broadcast("risk_pattern", risk_payload())
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::f"))
    s1, s2, s3 = seqs()
    r = think.client.get("/api/knowledge/events", {"since": 0})
    body = r.json()
    assert [m["seq"] for m in body["results"]] == [s1, s2, s3]
    assert body["recovered"] is True and body["top"] == s3 and body["next"] == s3
    r = think.client.get("/api/knowledge/events", {"since": s1, "types": "issue_pattern"})
    assert [m["seq"] for m in r.json()["results"]] == [s3]
    r = think.client.get("/api/knowledge/events", {"since": 0, "sources": "think"})
    assert [m["seq"] for m in r.json()["results"]] == [s2]
    r = think.client.get("/api/knowledge/events", {"since": 0, "events": "knowledge_validated"})
    assert r.json()["results"] == [] and r.json()["next"] == s3  # filtered-out events advance


@pytest.mark.django_db(transaction=True)  # readers see committed events only
def test_events_without_since_is_live_only(analysis, think):
    analysis.broadcast("issue_pattern", issue_payload())
    body = think.client.get("/api/knowledge/events").json()
    assert body["results"] == [] and body["next"] == seqs()[-1]


@pytest.mark.django_db(transaction=True)  # readers see committed events only
def test_events_hide_targeted_items_from_others(analysis, think, dream):
    analysis.broadcast("issue_pattern", issue_payload(), targets=["think"])
    assert len(think.client.get("/api/knowledge/events", {"since": 0}).json()["results"]) == 1
    body = dream.client.get("/api/knowledge/events", {"since": 0}).json()
    assert body["results"] == [] and body["next"] == seqs()[-1]


@pytest.mark.django_db(transaction=True)  # readers see committed events only
def test_events_report_unrecoverable_gaps(analysis, think):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    [s1] = seqs()
    epoch = think.client.get("/api/knowledge/events", {"since": 0}).json()["epoch"]
    # a different epoch (log reset or restored): recovered false, the client stands at the top
    body = think.client.get("/api/knowledge/events", {"since": s1, "epoch": "other"}).json()
    assert body["recovered"] is False and body["results"] == [] and body["position"] == s1
    # a seq from the future
    future = think.client.get("/api/knowledge/events", {"since": s1 + 50, "epoch": epoch}).json()
    assert future["recovered"] is False
    # pruned past the consumer's position
    Event.objects.update(created_at=timezone.now() - timedelta(days=90))
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::f"))
    s2 = seqs()[-1]
    assert actions.do_prune_events(timezone.now() - timedelta(days=30)) == 1
    body = think.client.get("/api/knowledge/events", {"since": s1 - 1, "epoch": epoch}).json()
    assert body["recovered"] is False and body["results"] == [] and body["position"] == s2
    body = think.client.get("/api/knowledge/events", {"since": s1, "epoch": epoch}).json()
    assert body["recovered"] is True and [m["seq"] for m in body["results"]] == [s2]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params, field",
    [
        ({"since": "-1"}, "since"),
        ({"wait": "x"}, "wait"),
        ({"types": "nope"}, "types"),
        ({"events": "boom"}, "events"),
    ],
)
def test_events_bad_params(think, params, field):
    r = think.client.get("/api/knowledge/events", params)
    assert r.status_code == 400 and any(k.startswith(field) for k in r.json()["errors"])


@pytest.mark.django_db(transaction=True)
def test_long_poll_returns_as_soon_as_an_event_commits(analysis, think, settings):
    """The poll may wait up to 10 minutes; the broadcast must end it (a poll that is not woken
    would still be waiting when ``done`` gives up)."""
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "long_poll_max_wait": 600}
    poll = PollInThread(think, {"since": 0, "wait": 600})
    assert wait_until_long_poll_parked()
    analysis.broadcast("issue_pattern", issue_payload())
    assert poll.done(), "the long poll was not woken by the broadcast"
    body = poll.response.json()
    assert [m["event"] for m in body["results"]] == ["knowledge_broadcast"]


@pytest.mark.django_db(transaction=True)  # the poll parks on the relay's own threads
def test_long_poll_times_out_empty(think):
    poll = PollInThread(think, {"since": 0, "wait": 1})
    assert wait_until_long_poll_parked(), "the poll answered without waiting"
    assert poll.done()
    assert poll.response.status_code == 200 and poll.response.json()["results"] == []


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="real concurrent transactions need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_reader_following_since_never_misses_with_concurrent_publishers(
    event_ordering, analysis, think
):
    """Two publishers whose transactions stay open a random while after writing their event
    (the trap: seq drawn at insert, commits in another order). A reader that follows
    ``since`` concurrently must see every event exactly once, in seq order. Both orderings:
    the tail lock, and the snapshot horizon without it."""
    per_publisher = 40
    done = threading.Event()
    errors: list[BaseException] = []

    def publish(persona, ktype, make):
        try:
            for i in range(per_publisher):
                data = BroadcastInput(ktype, make(i), 0.8, idempotency_key=f"{persona.name}-{i}")
                # The caller's transaction stays open after the action published its event.
                with transaction.atomic():
                    result = actions.do_broadcast(persona.worker, data)
                    time.sleep(random.uniform(0, 0.02))
                assert result.outcome == "created" and not result.replayed
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    seen: list[int] = []

    def follow():
        since = 0
        deadline = time.monotonic() + 120  # a guard, not an assertion: the check is below
        try:
            while time.monotonic() < deadline:
                finished = done.is_set()
                events, since = read_events(since, FeedFilter(), limit=7)
                seen.extend(e.seq for e in events)
                if finished and not events and since >= max(seqs(), default=0):
                    break
        finally:
            connections.close_all()

    reader = threading.Thread(target=follow)
    pubs = [
        threading.Thread(
            target=publish,
            args=(analysis, "issue_pattern", lambda i: issue_payload(location=f"{i}.py::f")),
        ),
        threading.Thread(
            target=publish, args=(think, "risk_pattern", lambda i: risk_payload(f"p{i}"))
        ),
    ]
    reader.start()
    for t in pubs:
        t.start()
    for t in pubs:
        t.join()
    done.set()
    reader.join(timeout=60)
    assert not errors, errors
    all_seqs = list(Event.objects.order_by("seq").values_list("seq", flat=True))
    assert len(all_seqs) == 2 * per_publisher
    assert seen == all_seqs  # every event, once, in order


def _publish(persona, location):
    return actions.do_broadcast(
        persona.worker, BroadcastInput("issue_pattern", issue_payload(location=location), 0.8)
    )


class InFlight:
    """A publisher in its own thread whose broadcast holds its seq uncommitted until
    :meth:`release` (its transaction stays open meanwhile)."""

    def __init__(self, persona, location: str):
        self.wrote, self.go = threading.Event(), threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(persona, location))

    def _run(self, persona, location):
        try:
            with transaction.atomic():
                _publish(persona, location)
                self.wrote.set()
                assert self.go.wait(30)
        except BaseException as exc:
            self.errors.append(exc)
            self.wrote.set()
        finally:
            connections.close_all()

    def start(self) -> InFlight:
        self.thread.start()
        assert self.wrote.wait(30) and not self.errors, self.errors
        return self

    def release(self) -> None:
        self.go.set()
        self.thread.join(30)


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="real concurrent transactions need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_reader_never_sees_a_later_seq_while_an_earlier_one_is_uncommitted(
    event_ordering, analysis, think
):
    """Publisher A writes seq N and keeps its transaction open; publisher B then publishes
    and commits (snapshot mode: seq N+1 at once; lock mode: B waits for A's tail lock). While
    A is open, a reader gets nothing (it must not move past N); once A commits, it gets N
    and then N+1, in order, with no gap."""
    b_done = threading.Event()
    errors: list[BaseException] = []

    def publisher_b():
        try:
            _publish(think, "b.py::f")
        except BaseException as exc:
            errors.append(exc)
        finally:
            b_done.set()
            connections.close_all()

    a = InFlight(analysis, "a.py::f").start()
    tb = threading.Thread(target=publisher_b)
    tb.start()
    if event_ordering == "snapshot":  # B has committed
        assert b_done.wait(30) and not errors + a.errors, errors + a.errors
        assert Event.objects.count() == 1  # B's event is committed, A's is not
    else:  # B is queued behind A's tail lock
        assert wait_for_lock_waiter() and not b_done.is_set()
    events, scanned = read_events(0, FeedFilter())
    assert events == [] and scanned == 0  # never past A's seq while A may still commit
    a.release()
    tb.join(30)
    errors += a.errors
    assert not errors, errors
    events, scanned = read_events(0, FeedFilter())
    a_seq, b_seq = seqs()
    assert a_seq < b_seq
    assert [(e.seq, e.source) for e in events] == [(a_seq, "analysis"), (b_seq, "think")]
    assert scanned == b_seq


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="real concurrent transactions need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_retention_never_prunes_past_a_seq_still_in_flight(analysis, think, settings):
    """Snapshot ordering: publisher A holds seq N uncommitted while B commits N+1, both past
    retention. The pruner must not delete N+1 and move the prune horizon past N: A's event
    would then commit below it and no consumer would ever get it. Once A commits, both go."""
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "event_ordering": "snapshot"}

    a = InFlight(analysis, "a.py::f").start()
    _publish(think, "b.py::f")
    [b_seq] = seqs()
    past_retention = timezone.now() + timedelta(days=1)
    try:
        assert actions.do_prune_events(past_retention) == 0
        assert LogState.current().pruned_through < b_seq
    finally:
        a.release()
    assert not a.errors, a.errors
    a_seq = seqs()[0]
    assert a_seq < b_seq
    events, _ = read_events(0, FeedFilter())
    assert [e.seq for e in events] == [a_seq, b_seq]  # A's event was not lost
    assert actions.do_prune_events(past_retention) == 2
    assert LogState.current().pruned_through == b_seq


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="real concurrent transactions need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_clearing_a_workers_state_never_moves_its_inbox_past_a_seq_in_flight(
    analysis, think, settings
):
    """Snapshot ordering: analysis's broadcast (for think's inbox) holds seq N uncommitted
    while think's state is cleared (its event: N+1). The cleared inbox must not stand past N:
    once analysis commits, think receives that broadcast, with no gap reported."""
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "event_ordering": "snapshot"}

    actions.read_inbox(think.worker)  # think's inbox exists before the broadcast
    a = InFlight(analysis, "a.py::f").start()
    try:
        actions.do_clear_state(think.worker, actor="think")
    finally:
        a.release()
    assert not a.errors, a.errors
    page = actions.read_inbox(think.worker)
    assert page.recovered is True
    assert [e.source for e in page.events] == ["analysis"]


@pytest.mark.skipif(
    not settings.DATABASES["default"].get("OPTIONS", {}).get("pool"),
    reason="the PostgreSQL connection pool is configured only with DATABASE_URL",
)
@pytest.mark.django_db(transaction=True)
def test_waiting_long_polls_do_not_exhaust_the_connection_pool(think, settings):
    """More concurrent long polls than the pool has connections, each waiting longer than
    the pool's checkout timeout: every one is answered, because a waiting poll gives its
    connection back (otherwise the extra ones fail with a pool timeout)."""
    # One token holds them all here: lift the per-token cap (knowledge/limits.py).
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "long_polls_per_token": 0}
    from rest_framework.test import APIClient

    pool = settings.DATABASES["default"]["OPTIONS"]["pool"]
    statuses: list[int] = []

    def poll():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {think.token}")
        try:
            r = client.get("/api/knowledge/events", {"since": 0, "wait": pool["timeout"] + 2})
            statuses.append(r.status_code)
        except Exception as exc:  # a pool timeout surfaces here
            statuses.append(type(exc).__name__)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=poll) for _ in range(pool["max_size"] + 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert statuses == [200] * (pool["max_size"] + 4)
