"""Retention: what the pruner (``manage.py prune``) deletes, one bounded batch at a time.

* **Events** older than ``event_retention_days`` (``do_prune_events``, which advances the
  log's horizon ``pruned_through``: a consumer behind it gets ``recovered: false``).
* **Items of ephemeral types** (registry ``persistence="ephemeral"``) older than five decay
  times (freshness below e^-5 ≈ 0.7 %).
* **Superseded items** older than ``superseded_retention_days`` (0 = keep that history for ever).

Items that take part in a conflict are never deleted: conflict history is immutable and its
rows point at them. Each function deletes at most ``batch`` rows so that one unit of work is
short and the pruner stops quickly on SIGTERM.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from config.product import product_settings
from knowledge.actions import do_prune_events
from knowledge.choices import ItemStatus
from knowledge.models import Event, KnowledgeItem
from knowledge.registry import registry

EPHEMERAL_DECAY_TIMES = 5


def prune_events_batch(now: datetime, batch: int) -> int:
    """Delete up to about ``batch`` of the oldest events past retention; returns the count."""
    days = product_settings().event_retention_days
    if days <= 0:
        return 0
    horizon = now - timedelta(days=days)
    # The created_at of the batch-th oldest event bounds this batch (events are created in
    # about seq order, and do_prune_events deletes by seq below the newest doomed one).
    nth = (
        Event.objects.order_by("seq")
        .values_list("created_at", flat=True)[batch : batch + 1]
        .first()
    )
    cutoff = min(horizon, nth) if nth is not None else horizon
    return do_prune_events(cutoff)


def _expired_items(now: datetime) -> Q | None:
    cond = Q()
    for kt in registry.all():
        if kt.persistence == "ephemeral":
            age = timedelta(seconds=kt.decay_seconds * EPHEMERAL_DECAY_TIMES)
            cond |= Q(knowledge_type=kt.name, observed_at__lt=now - age)
    days = product_settings().superseded_retention_days
    if days > 0:
        cond |= Q(status=ItemStatus.SUPERSEDED, created_at__lt=now - timedelta(days=days))
    return cond or None


def prune_items_batch(now: datetime, batch: int) -> int:
    """Delete up to ``batch`` items the registry's ``persistence`` or the superseded-history
    setting no longer keeps (never one in a conflict); returns the count."""
    cond = _expired_items(now)
    if cond is None:
        return 0
    with transaction.atomic():
        ids = list(
            KnowledgeItem.objects.filter(cond)
            .filter(conflict_links__isnull=True)
            .order_by("id")
            .values_list("id", flat=True)[:batch]
        )
        if not ids:
            return 0
        # Items they superseded point at them (SET_NULL); targets, idempotency records and
        # validations cascade.
        KnowledgeItem.objects.filter(superseded_by_id__in=ids).update(superseded_by=None)
        KnowledgeItem.objects.filter(id__in=ids).delete()
    return len(ids)


@dataclass
class PruneResult:
    events: int = 0
    items: int = 0

    @property
    def total(self) -> int:
        return self.events + self.items


def prune_once(now: datetime | None = None, batch: int = 10_000) -> PruneResult:
    """One unit of the pruner's work: one batch of events, one batch of items."""
    now = now or timezone.now()
    return PruneResult(events=prune_events_batch(now, batch), items=prune_items_batch(now, batch))


def reclaim_space() -> None:
    """After a pass that deleted rows: let PostgreSQL reuse the space at once (VACUUM, which
    does not lock out readers or writers) instead of waiting for autovacuum; without it a
    table pruned faster than autovacuum visits it keeps growing. SQLite reuses freed pages
    by itself."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return
    with connection.cursor() as cur:
        for model in (Event, KnowledgeItem):
            cur.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(model._meta.db_table)}")
