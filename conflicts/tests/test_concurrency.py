"""Races with real concurrent transactions (threads with their own connections).

The lambdas run (and finish) inside the loop iteration that defines them.

On PostgreSQL these exercise the tail lock + SKIP LOCKED design of conflicts.actions; on
SQLite the database serialises writers, and the same assertions must hold.
"""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.db import connection, transaction

from conflicts import actions
from conflicts.choices import ConflictStatus
from conflicts.models import Conflict, Resolution, SourceTrust
from conftest import Persona, risk_payload, wait_for_lock_waiter
from knowledge.actions import BroadcastInput, do_broadcast, do_broadcast_many
from knowledge.choices import EventKind, ItemStatus
from knowledge.errors import ActionError
from knowledge.models import Event, KnowledgeItem

pytestmark = pytest.mark.django_db(transaction=True)
# ruff: noqa: B023  (each lambda runs and finishes within its loop iteration)


def run_together(*fns):
    barrier = threading.Barrier(len(fns))
    results: list = [None] * len(fns)

    def wrap(i, fn):
        try:
            barrier.wait()
            results[i] = fn()
        except Exception as exc:  # collected for the assertions
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_concurrent_contradicting_broadcasts_make_exactly_one_conflict(db, event_ordering):
    """Both orderings: the tail lock, or (snapshot) the subject's lock, then the tail."""
    a, b, c = Persona("a"), Persona("b"), Persona("c")
    for round_ in range(6):
        pattern = f"race {round_}"
        results = run_together(
            lambda: do_broadcast(
                a.worker, BroadcastInput("risk_pattern", risk_payload(pattern, "high"), 0.8)
            ),
            lambda: do_broadcast(
                b.worker, BroadcastInput("risk_pattern", risk_payload(pattern, "low"), 0.8)
            ),
            lambda: do_broadcast(
                c.worker, BroadcastInput("risk_pattern", risk_payload(pattern, "medium"), 0.8)
            ),
        )
        assert not [r for r in results if isinstance(r, Exception)], results
        conflicts = Conflict.objects.filter(subject=pattern)
        assert conflicts.count() == 1, f"round {round_}: {list(conflicts.values())}"
        conflict = conflicts.get()
        assert conflict.items.count() == 3
        # the first broadcast raised nothing; the two later ones name the conflict
        assert sorted(len(r.conflict_ids) for r in results) == [0, 1, 1]
        assert (
            Event.objects.filter(
                kind=EventKind.CONFLICT_DETECTED, data__conflict__id=conflict.pk
            ).count()
            == 1
        )


def test_two_people_resolving_at_once_one_wins_other_gets_409(db, django_user_model):
    alice = django_user_model.objects.create_user("alice", is_staff=True)
    bob = django_user_model.objects.create_user("bob", is_staff=True)
    for round_ in range(5):
        # Fresh sources each round: decided rounds would teach the engine to trust `a`.
        a, b = Persona(f"a{round_}"), Persona(f"b{round_}")
        pattern = f"review {round_}"
        high = do_broadcast(
            a.worker, BroadcastInput("risk_pattern", risk_payload(pattern, "high"), 0.8)
        ).item
        res = do_broadcast(
            b.worker, BroadcastInput("risk_pattern", risk_payload(pattern, "low"), 0.8)
        )
        cid = res.conflict_ids[0]
        results = run_together(
            lambda: actions.do_resolve(cid, "pick", user=alice, winner_item_id=high.pk),
            lambda: actions.do_resolve(cid, "pick", user=bob, winner_item_id=res.item.pk),
        )
        ok = [r for r in results if not isinstance(r, Exception)]
        errors = [r for r in results if isinstance(r, Exception)]
        assert len(ok) == 1 and len(errors) == 1, results
        assert isinstance(errors[0], ActionError) and errors[0].status == 409
        assert Resolution.objects.filter(conflict_id=cid).count() == 1
        assert (
            Event.objects.filter(kind=EventKind.KNOWLEDGE_RESOLVED, data__conflict__id=cid).count()
            == 1
        )
        conflict = Conflict.objects.get(pk=cid)
        assert conflict.status == ConflictStatus.RESOLVED
        # exactly one of the two items survives
        assert KnowledgeItem.objects.filter(subject=pattern, status=ItemStatus.ACTIVE).count() == 1


def test_resolving_while_the_loser_rebroadcasts_neither_deadlocks_nor_double_applies(
    db, django_user_model
):
    alice = django_user_model.objects.create_user("alice", is_staff=True)
    a, b = Persona("a"), Persona("b")
    for round_ in range(5):
        pattern = f"busy {round_}"
        high = do_broadcast(
            a.worker, BroadcastInput("risk_pattern", risk_payload(pattern, "high"), 0.8)
        ).item
        res = do_broadcast(
            b.worker, BroadcastInput("risk_pattern", risk_payload(pattern, "low"), 0.8)
        )
        cid = res.conflict_ids[0]
        results = run_together(
            lambda: actions.do_resolve(cid, "pick", user=alice, winner_item_id=high.pk),
            lambda: do_broadcast(
                b.worker, BroadcastInput("risk_pattern", risk_payload(pattern, "low"), 0.9)
            ),
        )
        unexpected = [
            r
            for r in results
            if isinstance(r, Exception) and not (isinstance(r, ActionError) and r.status == 409)
        ]
        assert not unexpected, results
        assert Resolution.objects.filter(conflict_id=cid).count() <= 1
        # whatever the order, no subject is left with two active contradicting items and no open conflict
        active = set(
            KnowledgeItem.objects.filter(subject=pattern, status=ItemStatus.ACTIVE).values_list(
                "claim", flat=True
            )
        )
        unsettled = Conflict.objects.filter(subject=pattern).unsettled().count()
        assert len(active) == 1 or unsettled == 1


@pytest.mark.skipif(
    not settings.IS_POSTGRES, reason="row locks held by another transaction: PostgreSQL only"
)
def test_locked_competing_item_defers_auto_resolution_instead_of_blocking(db):
    sources = [Persona(f"w{i}") for i in range(4)]
    for p in sources[:3]:
        SourceTrust.objects.create(worker=p.worker, knowledge_type="risk_pattern", alpha=40, beta=2)
    held = do_broadcast(
        sources[0].worker, BroadcastInput("risk_pattern", risk_payload(level="high"), 0.9)
    ).item
    for p in sources[1:3]:
        do_broadcast(p.worker, BroadcastInput("risk_pattern", risk_payload(level="high"), 0.9))
    locked, release = threading.Event(), threading.Event()

    def hold_row():  # e.g. a validation of that item, in flight
        try:
            with transaction.atomic():
                KnowledgeItem.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(120)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_row)
    holder.start()
    assert locked.wait(10)
    outcome: dict = {}

    def contradict():
        try:
            outcome["result"] = do_broadcast(
                sources[3].worker, BroadcastInput("risk_pattern", risk_payload(level="low"), 0.6)
            )
        finally:
            connection.close()

    broadcaster = threading.Thread(target=contradict)
    broadcaster.start()
    try:
        # The row stays locked until ``release``: a broadcast that waited for it would still be
        # running when ``join`` gives up.
        broadcaster.join(60)
        assert not broadcaster.is_alive(), "the broadcast waited for the locked row"
    finally:
        release.set()
        holder.join(20)
        broadcaster.join(60)
    result = outcome["result"]
    conflict = Conflict.objects.get(pk=result.conflict_ids[0])
    assert conflict.status == ConflictStatus.PENDING_REVIEW and conflict.margin >= 0.85
    # the sweep applies it once the row is free
    assert actions.sweep_conflicts() == 1
    conflict.refresh_from_db()
    assert conflict.status == ConflictStatus.AUTO_RESOLVED
    assert KnowledgeItem.objects.get(pk=result.item.pk).status == ItemStatus.SUPERSEDED


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="observes lock waits in pg_stat_activity")
def test_two_concurrent_contradicting_bulks_on_a_new_subject_make_one_conflict(db, event_ordering):
    """A bulk's detection takes the tail lock (snapshot ordering: its subjects' locks) before
    it looks for busy subjects: a bulk that stored a contradicting item and has not committed
    yet is seen once it commits.
    (Before the pipeline, the batch path looked without the lock and both missed it.)"""
    a, b = Persona("a"), Persona("b")
    stored, release = threading.Event(), threading.Event()

    def bulk_of(persona, level, other):
        return [
            BroadcastInput("risk_pattern", risk_payload("new subject", level), 0.8),
            BroadcastInput("risk_pattern", risk_payload(other, level), 0.8),
        ]

    def first():
        try:
            with transaction.atomic():  # the caller keeps the bulk's transaction open
                do_broadcast_many(a.worker, bulk_of(a, "high", "only a"))
                stored.set()
                release.wait(30)
        finally:
            connection.close()

    results = {}

    def second():
        try:
            results["b"] = do_broadcast_many(b.worker, bulk_of(b, "low", "only b"))
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert stored.wait(30)
    threads[1].start()
    waited = wait_for_lock_waiter()
    release.set()
    for t in threads:
        t.join(60)
    assert waited, "the second bulk never waited for the first"
    [conflict] = Conflict.objects.filter(subject="new subject")
    assert results["b"][0].conflict_ids == [conflict.pk]
    assert results["b"][1].conflict_ids == []
