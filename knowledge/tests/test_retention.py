"""Retention (knowledge/retention.py, ``manage.py prune``): events past the retention window,
ephemeral types' items, superseded history; readers behind the horizon are told."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from conftest import risk_payload
from knowledge.choices import ItemStatus
from knowledge.models import Event, KnowledgeItem
from knowledge.registry import registry
from knowledge.retention import prune_once

# Readers see committed events only: the tests publish in committed transactions
# (docs/decisions/event-log-ordering.md, "The test-time rule").
pytestmark = pytest.mark.django_db(transaction=True)
DAY = timedelta(days=1)


@pytest.fixture
def ephemeral_risk():
    """risk_pattern declared ephemeral for the test (decay 7 d: pruned after 35 d)."""
    original = registry["risk_pattern"]
    registry.register(dataclasses.replace(original, persistence="ephemeral"), replace=True)
    yield
    registry.register(original, replace=True)


def test_events_past_retention_are_pruned_and_readers_behind_get_recovered_false(think, analysis):
    think.broadcast("risk_pattern", risk_payload("old"))
    epoch = think.client.get("/api/knowledge/events", {"since": 0}).json()["epoch"]
    Event.objects.update(created_at=timezone.now() - 40 * DAY)
    think.broadcast("risk_pattern", risk_payload("new"))
    old_seq, new_seq = Event.objects.values_list("seq", flat=True)

    result = prune_once()

    assert result.events == 1
    assert list(Event.objects.values_list("seq", flat=True)) == [new_seq]
    behind = analysis.client.get("/api/knowledge/events", {"since": 0, "epoch": epoch}).json()
    # The one resume rule (knowledge/resume.py): not recovered, the reader stands at the top.
    assert behind["recovered"] is False
    assert behind["results"] == [] and behind["position"] == new_seq
    caught_up = analysis.client.get("/api/knowledge/events", {"since": old_seq, "epoch": epoch})
    assert caught_up.json()["recovered"] is True
    inbox = analysis.client.get("/api/knowledge/receive/analysis").json()
    assert inbox["recovered"] is False
    assert prune_once().total == 0  # nothing left to do


def test_one_unit_of_work_deletes_one_batch(think):
    for i in range(5):
        think.broadcast("risk_pattern", risk_payload(f"p{i}"))
    Event.objects.update(created_at=timezone.now() - 40 * DAY)
    seqs = list(Event.objects.values_list("seq", flat=True))
    for i, seq in enumerate(seqs):  # created about in seq order, as in production
        Event.objects.filter(seq=seq).update(created_at=timezone.now() - (40 - i / 10) * DAY)

    assert prune_once(batch=2).events == 2
    assert list(Event.objects.values_list("seq", flat=True)) == seqs[2:]
    assert prune_once(batch=2).events == 2
    assert prune_once(batch=2).events == 1
    assert Event.objects.count() == 0


def test_retention_zero_keeps_every_event(think, settings):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "event_retention_days": 0}
    think.broadcast("risk_pattern", risk_payload("old"))
    Event.objects.update(created_at=timezone.now() - 400 * DAY)
    assert prune_once().events == 0 and Event.objects.count() == 1


def test_ephemeral_items_go_after_five_decay_times_persistent_and_contested_stay(
    ephemeral_risk, think, analysis
):
    think.broadcast("risk_pattern", risk_payload("lonely"))
    think.broadcast("risk_pattern", risk_payload("disputed", "high"))
    analysis.broadcast("risk_pattern", risk_payload("disputed", "low"))  # a contradiction
    think.broadcast(
        "issue_pattern", {"rule": "long_function", "location": "a.py::f", "severity": "high"}
    )
    assert KnowledgeItem.objects.count() == 4

    assert prune_once(now=timezone.now() + 34 * DAY).items == 0  # not five decay times yet
    result = prune_once(now=timezone.now() + 36 * DAY)

    assert result.items == 1
    left = set(KnowledgeItem.objects.values_list("knowledge_type", "subject"))
    assert ("risk_pattern", "lonely") not in left
    assert {s for t, s in left if t == "risk_pattern"} == {"disputed"}  # in a conflict: kept
    assert any(t == "issue_pattern" for t, _ in left)  # persistent type: kept


def test_superseded_history_is_kept_unless_the_setting_says_otherwise(think, settings):
    think.broadcast("risk_pattern", risk_payload("revised", "high"))
    think.broadcast("risk_pattern", risk_payload("revised", "low"))  # the source revises itself
    old = KnowledgeItem.objects.get(status=ItemStatus.SUPERSEDED)
    later = timezone.now() + 400 * DAY

    assert prune_once(now=later).items == 0  # default: superseded history kept for ever

    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "superseded_retention_days": 90}
    assert prune_once(now=timezone.now() + 89 * DAY).items == 0
    assert prune_once(now=later).items == 1
    assert not KnowledgeItem.objects.filter(pk=old.pk).exists()
    assert KnowledgeItem.objects.get().status == ItemStatus.ACTIVE


def test_prune_command_runs_one_pass(think, capsys):
    think.broadcast("risk_pattern", risk_payload("old"))
    Event.objects.update(created_at=timezone.now() - 40 * DAY)
    call_command("prune")
    assert Event.objects.count() == 0
    assert "pruned 1 events, 0 items" in capsys.readouterr().out
