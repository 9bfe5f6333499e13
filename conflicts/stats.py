"""Conflict statistics: ``GET resolution-stats``, the ``conflicts`` section of ``GET stats``
and the gauges on ``/metrics``."""

from __future__ import annotations

import statistics

from django.db.models import Count, Q

from conflicts.choices import Actor, ConflictStatus, Decision
from conflicts.models import Conflict, Resolution
from identity.models import Worker

#: The median time to resolve is taken over the latest this many decided conflicts.
MEDIAN_WINDOW = 5000


def status_counts(conflicts=None) -> dict[str, int]:
    conflicts = Conflict.objects.all() if conflicts is None else conflicts
    counts = dict(conflicts.values_list("status").annotate(n=Count("id")).order_by())
    return {s: counts.get(s, 0) for s in ConflictStatus.values}


def resolution_stats(viewer: Worker | None = None) -> dict:
    """Counts by status, classification and strategy; auto-resolve rate; the engine's
    precision against people; median time to resolve. A worker (``viewer``) gets them over
    the conflicts it may see only (``Conflict.objects.visible_to``)."""
    conflicts = Conflict.objects.visible_to(viewer)
    resolutions = Resolution.objects.all()
    if viewer is not None:
        resolutions = resolutions.filter(conflict__in=conflicts.values("pk"))
    by_status = status_counts(conflicts)
    by_class = dict(conflicts.values_list("classification").annotate(n=Count("id")).order_by())
    by_strategy = {}
    for strategy, decision, n in (
        resolutions.values_list("strategy", "decision").annotate(n=Count("id")).order_by()
    ):
        by_strategy.setdefault(strategy, {})[decision] = n
    decided = sum(by_status[s] for s in (ConflictStatus.AUTO_RESOLVED, ConflictStatus.RESOLVED))
    judged = resolutions.filter(
        actor=Actor.HUMAN,
        decision__in=[Decision.ACCEPT, Decision.PICK, Decision.REJECT],
        proposal_agreed__isnull=False,
    ).aggregate(n=Count("id"), agreed=Count("id", filter=Q(proposal_agreed=True)))
    durations = [
        (resolved - opened).total_seconds()
        for opened, resolved in conflicts.filter(resolved_at__isnull=False)
        .exclude(decision=Decision.DISSOLVED)
        .order_by("-resolved_at")
        .values_list("opened_at", "resolved_at")[:MEDIAN_WINDOW]
    ]
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_classification": by_class,
        "by_strategy": by_strategy,
        "unresolved": by_status[ConflictStatus.OPEN] + by_status[ConflictStatus.PENDING_REVIEW],
        "auto_resolve_rate": round(by_status[ConflictStatus.AUTO_RESOLVED] / decided, 4)
        if decided
        else None,
        "engine_precision": {
            "human_decisions": judged["n"],
            "agreed": judged["agreed"],
            "precision": round(judged["agreed"] / judged["n"], 4) if judged["n"] else None,
        },
        "median_seconds_to_resolve": round(statistics.median(durations), 1) if durations else None,
    }


def stats_section(viewer: Worker | None = None) -> dict:
    """The ``conflicts`` section of ``GET stats`` (cheap: one grouped count), over the
    conflicts ``viewer`` may see."""
    by_status = status_counts(Conflict.objects.visible_to(viewer))
    return {
        "by_status": by_status,
        "unresolved": by_status[ConflictStatus.OPEN] + by_status[ConflictStatus.PENDING_REVIEW],
        "pending_review": by_status[ConflictStatus.PENDING_REVIEW],
    }


def collect_metrics():
    """Conflict gauges for ``/metrics`` (the dashboard registers this collector)."""
    from prometheus_client.core import GaugeMetricFamily

    by_status = status_counts()
    gauge = GaugeMetricFamily("kx_conflicts", "Conflicts by status.", labels=["status"])
    for status, n in by_status.items():
        gauge.add_metric([status], n)
    yield gauge
    yield GaugeMetricFamily(
        "kx_conflicts_unresolved",
        "Conflicts open or pending review (the plan alerts above 10).",
        value=by_status[ConflictStatus.OPEN] + by_status[ConflictStatus.PENDING_REVIEW],
    )
