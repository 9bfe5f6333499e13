"""The numbers behind ``GET stats`` and the dashboard overview (one function for both)."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone

from identity.models import Worker
from knowledge import cache as knowledge_cache
from knowledge.choices import ItemStatus, ValidationStatus
from knowledge.events import log_position
from knowledge.models import KnowledgeItem
from knowledge.stats_hooks import collect


def collect_stats(viewer: Worker | None = None) -> dict:
    """Totals over the items ``viewer`` (a worker; None for a person) may see."""
    since = timezone.now() - timedelta(hours=24)
    items = (
        KnowledgeItem.objects.all() if viewer is None else KnowledgeItem.objects.visible_to(viewer)
    )
    totals = items.aggregate(
        total=Count("id"),
        active=Count("id", filter=Q(status=ItemStatus.ACTIVE)),
        superseded=Count("id", filter=Q(status=ItemStatus.SUPERSEDED)),
        last_24h=Count("id", filter=Q(created_at__gte=since)),
        validated=Count("id", filter=~Q(validation_status=ValidationStatus.UNVALIDATED)),
        confirmed=Count("id", filter=Q(validation_status=ValidationStatus.CONFIRMED)),
        disputed=Count("id", filter=Q(validation_status=ValidationStatus.DISPUTED)),
    )
    by_type = dict(items.values_list("knowledge_type").annotate(n=Count("id")).order_by())
    by_source = dict(items.values_list("source__name").annotate(n=Count("id")).order_by())
    pos = log_position()
    return {
        "items": totals,
        "by_type": by_type,
        "by_source": by_source,
        "validation_rate": round(totals["validated"] / totals["total"], 4)
        if totals["total"]
        else None,
        "workers": Worker.objects.filter(is_active=True).count(),
        "events": {"epoch": pos.epoch, "top": pos.top, "pruned_through": pos.pruned_through},
        "cache": knowledge_cache.stats(),
        **collect(viewer),
    }
