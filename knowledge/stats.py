"""The numbers behind ``GET stats``, the dashboard overview and the item gauges of ``/metrics``.

Counting what a viewer may see used to be three scans of the item table per request (totals,
by type, by source; ~0.5 s of database time at 1,000,000 items), and any worker token could
ask for it as often as its rate limit allows. Now the table is counted once into groups (type,
status, validation status, source, targeted) with their sizes, shared through the cache for
at most ``metrics_cache_seconds`` (``shared_aggregate``); a viewer's numbers are added up
from the groups it may see (``visible_unaddressed``, the visibility rule's own test on those
columns) plus the items others addressed to it (one query through its target links, as many
rows as it was sent). docs/performance.md, "Statistics without a scan per request".
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.core.cache import cache
from django.db.models import Count, Q

from config.product import product_settings
from identity.models import Worker
from knowledge import cache as knowledge_cache
from knowledge.choices import ItemStatus, ValidationStatus
from knowledge.events import log_position
from knowledge.models import (
    KnowledgeItem,
    KnowledgeTarget,
    visible_unaddressed,
    visible_unaddressed_q,
)
from knowledge.scopes import read_types
from knowledge.stats_hooks import collect

#: What the item counts are grouped by: everything a total, ``by_type`` or ``by_source``
#: filters on, and what visibility depends on apart from target links.
GROUP_COLUMNS = ("knowledge_type", "status", "validation_status", "source_id", "is_targeted")
ITEM_GROUPS_KEY = "kx:stats:item-groups"
_lock = threading.Lock()


def shared_aggregate(key: str, compute: Callable[[], object]):
    """``compute()``, reused for ``metrics_cache_seconds`` by every process (the shared
    cache): a flood of requests, or scrapes, runs it once per period, and parallel callers in
    one process wait for one computation. 0 or less: computed on every call."""
    ttl = product_settings().metrics_cache_seconds
    if ttl <= 0:
        return compute()

    def fresh(entry) -> bool:
        return entry is not None and 0 <= time.time() - entry[0] < ttl

    entry = cache.get(key)
    if not fresh(entry):
        with _lock:
            entry = cache.get(key)
            if not fresh(entry):
                entry = (time.time(), compute())
                cache.set(key, entry, ttl)
    return entry[1]


@dataclass
class ItemGroups:
    """The item table counted by ``GROUP_COLUMNS``: rows ``(*GROUP_COLUMNS, n, last_24h)``,
    with the names of their sources, as of ``counted_at`` (epoch seconds)."""

    counted_at: float
    rows: list[tuple] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)

    @property
    def since(self) -> datetime:
        """The start of the last 24 hours the rows count."""
        return datetime.fromtimestamp(self.counted_at, tz=UTC) - timedelta(hours=24)


def _grouped(items, since: datetime) -> list[tuple]:
    return list(
        items.values_list(*GROUP_COLUMNS)
        .annotate(n=Count("id"), last_24h=Count("id", filter=Q(created_at__gte=since)))
        .order_by()
    )


def _count_groups() -> ItemGroups:
    groups = ItemGroups(counted_at=time.time())
    groups.rows = _grouped(KnowledgeItem.objects.all(), groups.since)
    ids = {row[3] for row in groups.rows}
    groups.names = dict(Worker.objects.filter(pk__in=ids).values_list("pk", "name"))
    return groups


def item_groups() -> ItemGroups:
    """The item table's groups, at most ``metrics_cache_seconds`` old (``shared_aggregate``)."""
    return shared_aggregate(ITEM_GROUPS_KEY, _count_groups)


def visible_rows(viewer: Worker | None, groups: ItemGroups | None = None) -> list[tuple]:
    """The rows of ``groups`` (default: ``item_groups()``) that ``viewer`` may see, plus the
    items other workers addressed to it, grouped the same way. People (None) see every row."""
    groups = groups or item_groups()
    if viewer is None:
        return groups.rows
    readable = read_types(viewer)
    rows = [r for r in groups.rows if visible_unaddressed(viewer, readable, r[0], r[3], r[4])]
    addressed = KnowledgeItem.objects.filter(
        pk__in=KnowledgeTarget.objects.filter(worker=viewer).values("item_id")
    ).exclude(visible_unaddressed_q(viewer, readable))
    return rows + _grouped(addressed, groups.since)


def collect_stats(viewer: Worker | None = None) -> dict:
    """Totals over the items ``viewer`` (a worker; None for a person) may see."""
    groups = item_groups()
    rows = visible_rows(viewer, groups)
    totals = Counter()
    by_type, by_source = Counter(), Counter()
    for knowledge_type, status, validation, source_id, _, n, last_24h in rows:
        totals["total"] += n
        totals["active"] += n if status == ItemStatus.ACTIVE else 0
        totals["superseded"] += n if status == ItemStatus.SUPERSEDED else 0
        totals["last_24h"] += last_24h
        totals["validated"] += n if validation != ValidationStatus.UNVALIDATED else 0
        totals["confirmed"] += n if validation == ValidationStatus.CONFIRMED else 0
        totals["disputed"] += n if validation == ValidationStatus.DISPUTED else 0
        by_type[knowledge_type] += n
        by_source[source_id] += n
    missing = set(by_source) - set(groups.names)  # a source newer than the groups
    names = {
        **groups.names,
        **dict(Worker.objects.filter(pk__in=missing).values_list("pk", "name")),
    }
    keys = ("total", "active", "superseded", "last_24h", "validated", "confirmed", "disputed")
    items = {key: totals[key] for key in keys}
    pos = log_position()
    return {
        "items": items,
        "by_type": dict(by_type),
        "by_source": {names[source_id]: n for source_id, n in by_source.items()},
        "validation_rate": round(items["validated"] / items["total"], 4)
        if items["total"]
        else None,
        "counted_at": datetime.fromtimestamp(groups.counted_at, tz=UTC).isoformat(),
        "workers": Worker.objects.filter(is_active=True).count(),
        "events": {"epoch": pos.epoch, "top": pos.top, "pruned_through": pos.pruned_through},
        "cache": knowledge_cache.stats(),
        **collect(viewer),
    }
