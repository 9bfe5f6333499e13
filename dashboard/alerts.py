"""Alert rules: what each one measures. Evaluated only by the alert checker.

A rule is a function ``measure(rule) -> Measurement | None`` registered under a name with its
defaults (the original plan's thresholds; migration 0003 seeds the same rows, the admin
edits them). ``dashboard.actions.do_check_alerts`` (run by ``manage.py check_alerts``) measures
every enabled rule, applies ``min_samples`` and the pending period, and persists the state and
its flips (``dashboard.models``). Pages and ``/metrics`` read the stored state: looking at a
page never measures, and never writes.

| rule | level | breaches when | min samples |
|---|---|---|---|
| broadcast_rate_drop | warning | broadcasts in the last 15 min < 50 % of the 15 min before | 20 broadcasts before |
| api_latency | warning | P95 of API requests over the last 5 min > 100 ms (all processes) | 20 requests |
| websocket_drop | critical | open live-feed connections < 80 % of the most seen in 5 min | a peak of 5 |
| unresolved_conflicts | warning | conflicts waiting (open or pending review) > 10 | - |
| database_latency | warning | median of 3 database round trips > 50 ms (or no answer) | 3 probes |
| stale_knowledge | warning | a type broadcast in the last 7 days has no active item with freshness >= 0.5 | 1 type |
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from django.core.cache import cache
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from dashboard.choices import AlertLevel

if TYPE_CHECKING:
    from dashboard.models import AlertRule


@dataclass
class Measurement:
    """What a rule saw: ``breached`` before ``min_samples`` is applied."""

    value: float | None
    breached: bool
    message: str
    samples: int | None = None


@dataclass
class RuleSpec:
    name: str
    measure: Callable[[AlertRule], Measurement | None]
    defaults: dict = field(default_factory=dict)
    link: str = ""  # a page where the operator acts on it


_rules: dict[str, RuleSpec] = {}


def register(
    name: str, measure: Callable[[AlertRule], Measurement | None], link: str = "", **defaults
) -> None:
    """Add a rule; ``defaults`` are the ``AlertRule`` fields of the row created for it."""
    _rules[name] = RuleSpec(name, measure, defaults, link)


def specs() -> dict[str, RuleSpec]:
    return dict(_rules)


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 conflict``, ``2 conflicts``."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def broadcast_rate_drop(rule: AlertRule) -> Measurement:
    from knowledge.models import KnowledgeItem

    now = timezone.now()
    window = timedelta(minutes=15)
    current = KnowledgeItem.objects.filter(created_at__gte=now - window).count()
    previous = KnowledgeItem.objects.filter(
        created_at__gte=now - 2 * window, created_at__lt=now - window
    ).count()
    ratio = current / previous if previous else None
    return Measurement(
        None if ratio is None else round(ratio, 3),
        ratio is not None and ratio < rule.threshold,
        f"{plural(current, 'broadcast')} in the last 15 min, {previous} in the 15 min before",
        previous,
    )


def api_latency(rule: AlertRule) -> Measurement:
    from dashboard import latency

    p95, n = latency.window(300)
    if p95 is None:
        return Measurement(None, False, "no API requests in the last 5 min", 0)
    return Measurement(
        round(p95, 1),
        p95 > rule.threshold,
        f"P95 of {plural(n, 'API request')} in the last 5 min: {p95:.0f} ms",
        n,
    )


WS_PEAK_KEY = "kx:alerts:ws-peak"


def websocket_drop(rule: AlertRule) -> Measurement | None:
    try:
        from knowledge import relay
    except ImportError:
        return None
    count = relay.connection_stats().get("connections", 0)
    now = time.time()
    samples = [s for s in (cache.get(WS_PEAK_KEY) or []) if now - s[0] <= 300]
    samples.append((now, count))
    cache.set(WS_PEAK_KEY, samples[-200:], 600)  # the checker's own memory across passes
    peak = max(c for _, c in samples)
    ratio = count / peak if peak else None
    return Measurement(
        None if ratio is None else round(ratio, 3),
        ratio is not None and ratio < rule.threshold,
        f"{plural(count, 'live connection')}, {peak} at most in the last 5 min",
        peak,
    )


DATABASE_PROBES = 3


def database_latency(rule: AlertRule) -> Measurement:
    from knowledge.health import _timed, check_database

    results = [_timed(check_database) for _ in range(DATABASE_PROBES)]
    if not all(r["ok"] for r in results):
        return Measurement(None, True, "the database did not answer", DATABASE_PROBES)
    ms = statistics.median(r["latency_ms"] for r in results)
    return Measurement(
        round(ms, 1),
        ms > rule.threshold,
        f"database round trip {ms:.1f} ms (median of {DATABASE_PROBES})",
        DATABASE_PROBES,
    )


def stale_knowledge(rule: AlertRule) -> Measurement:
    from knowledge.models import KnowledgeItem
    from knowledge.registry import registry

    since = timezone.now() - timedelta(days=7)
    recent = {
        t
        for t in KnowledgeItem.objects.filter(created_at__gte=since)
        .values_list("knowledge_type", flat=True)
        .distinct()
        .order_by()
        if t in registry
    }
    stale = sorted(
        t for t in recent if not KnowledgeItem.objects.active().fresh(rule.threshold, [t]).exists()
    )
    return Measurement(
        len(stale),
        bool(stale),
        f"no fresh item (freshness >= {rule.threshold:g}) of: " + ", ".join(stale)
        if stale
        else "every recently broadcast type has fresh knowledge",
        len(recent),
    )


def unresolved_conflicts(rule: AlertRule) -> Measurement:
    """The plan's alert: more than 10 conflicts waiting for a decision."""
    from conflicts.stats import stats_section

    n = stats_section()["unresolved"]
    return Measurement(
        n, n > rule.threshold, f"{plural(n, 'conflict')} open or pending review", None
    )


def alert_metrics():
    """``kx_alert_firing`` and ``kx_alert_state`` on ``/metrics``: the stored state, as the
    checker left it (registered by ``DashboardConfig.ready``)."""
    from dashboard.choices import AlertState
    from dashboard.models import AlertRule

    firing = GaugeMetricFamily(
        "kx_alert_firing",
        "1 when an alert rule is firing (stored by the alert checker).",
        labels=["alert", "level"],
    )
    state = GaugeMetricFamily(
        "kx_alert_state",
        "1 for the rule's current state (ok, pending, firing, resolved).",
        labels=["alert", "state"],
    )
    for rule in AlertRule.objects.filter(enabled=True).order_by("name"):
        firing.add_metric([rule.name, rule.level], 1 if rule.firing else 0)
        for s in AlertState.values:
            state.add_metric([rule.name, s], 1 if rule.state == s else 0)
    yield firing
    yield state


# The original plan's thresholds (migration 0003 seeds the same rows).
register(
    "broadcast_rate_drop",
    broadcast_rate_drop,
    description="broadcasts in the last 15 min fell below this share of the 15 min before",
    level=AlertLevel.WARNING,
    threshold=0.5,
    unit="ratio",
    min_samples=20,
    for_seconds=60,
)
register(
    "api_latency",
    api_latency,
    description="P95 of API requests over the last 5 min (all server processes)",
    level=AlertLevel.WARNING,
    threshold=100.0,
    unit="ms",
    min_samples=20,
    for_seconds=60,
)
register(
    "websocket_drop",
    websocket_drop,
    link="dashboard:live-connections",
    description="open live-feed connections fell below this share of the 5 min peak",
    level=AlertLevel.CRITICAL,
    threshold=0.8,
    unit="ratio",
    min_samples=5,
    for_seconds=30,
)
register(
    "unresolved_conflicts",
    unresolved_conflicts,
    link="conflicts:queue",
    description="conflicts open or pending review",
    level=AlertLevel.WARNING,
    threshold=10,
    unit="conflicts",
    min_samples=0,
    for_seconds=0,
)
register(
    "database_latency",
    database_latency,
    description="median database round trip of the health check",
    level=AlertLevel.WARNING,
    threshold=50.0,
    unit="ms",
    min_samples=3,
    for_seconds=60,
)
register(
    "stale_knowledge",
    stale_knowledge,
    description="a type broadcast in the last 7 days has no active item this fresh",
    level=AlertLevel.WARNING,
    threshold=0.5,
    unit="freshness",
    min_samples=1,
    for_seconds=0,
)
