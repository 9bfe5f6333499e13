"""Alert rules with the thresholds of the original plan.

| rule | level | fires when |
|---|---|---|
| broadcast_rate_drop | warning | broadcasts in the last 15 min < 50 % of the 15 min before (which had >= 20) |
| api_latency | warning | P95 of API requests in the last 5 min > 100 ms (this process) |
| websocket_drop | critical | open live-feed connections < 80 % of the most seen in the last 5 min (>= 5) |
| unresolved_conflicts | warning | conflicts waiting (open or pending review) > 10 |
| database_latency | warning | the health check's database round trip > 50 ms |
| stale_knowledge | warning | a type broadcast in the last 7 days has no active item with freshness >= 0.5 |

``evaluate()`` runs them all (cheap: a few indexed queries); the overview page shows the
result, ``/metrics`` exports ``kx_alert_firing``, and ``manage.py check_alerts`` publishes an
``alert_fired`` event when a rule starts or stops firing. Apps add rules with ``register``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.core.cache import cache
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

WARNING = "warning"
CRITICAL = "critical"


@dataclass
class Alert:
    name: str
    level: str
    firing: bool
    value: float | None
    threshold: float
    message: str

    def as_dict(self) -> dict:
        return asdict(self)


_rules: dict[str, Callable[[], Alert | None]] = {}


def register(name: str, rule: Callable[[], Alert | None]) -> None:
    _rules[name] = rule


def evaluate() -> list[Alert]:
    """Every rule's current state (a rule that cannot be evaluated is left out)."""
    out = []
    for rule in _rules.values():
        alert = rule()
        if alert is not None:
            out.append(alert)
    return sorted(out, key=lambda a: (not a.firing, a.level != CRITICAL, a.name))


def broadcast_rate_drop() -> Alert:
    from knowledge.models import KnowledgeItem

    now = timezone.now()
    window = timedelta(minutes=15)
    current = KnowledgeItem.objects.filter(created_at__gte=now - window).count()
    previous = KnowledgeItem.objects.filter(
        created_at__gte=now - 2 * window, created_at__lt=now - window
    ).count()
    ratio = current / previous if previous else None
    firing = previous >= 20 and current < 0.5 * previous
    return Alert(
        "broadcast_rate_drop",
        WARNING,
        firing,
        ratio,
        0.5,
        f"{current} broadcasts in the last 15 min, {previous} in the 15 min before",
    )


def api_latency() -> Alert | None:
    from dashboard.middleware import recent_api_p95

    p95, n = recent_api_p95(300)
    if n == 0:
        return Alert(
            "api_latency", WARNING, False, None, 100.0, "no API requests in the last 5 min"
        )
    ms = p95 * 1000
    return Alert(
        "api_latency",
        WARNING,
        ms > 100,
        round(ms, 1),
        100.0,
        f"P95 of {n} API requests in the last 5 min: {ms:.1f} ms (this process)",
    )


WS_PEAK_KEY = "kx:alerts:ws-peak"


def websocket_drop() -> Alert | None:
    try:
        from knowledge import relay
    except ImportError:
        return None
    count = relay.connection_stats().get("connections", 0)
    now = time.time()
    samples = [s for s in (cache.get(WS_PEAK_KEY) or []) if now - s[0] <= 300]
    samples.append((now, count))
    cache.set(WS_PEAK_KEY, samples[-200:], 600)
    peak = max(c for _, c in samples)
    firing = peak >= 5 and count < 0.8 * peak
    return Alert(
        "websocket_drop",
        CRITICAL,
        firing,
        count,
        round(0.8 * peak, 1),
        f"{count} live connections, {peak} at most in the last 5 min",
    )


def database_latency() -> Alert:
    from knowledge.health import _timed, check_database

    result = _timed(check_database)
    ms = result["latency_ms"]
    if not result["ok"]:
        return Alert("database_latency", CRITICAL, True, None, 50.0, "the database did not answer")
    return Alert("database_latency", WARNING, ms > 50, ms, 50.0, f"database round trip {ms:.1f} ms")


def stale_knowledge() -> Alert:
    from knowledge.models import KnowledgeItem
    from knowledge.registry import registry

    since = timezone.now() - timedelta(days=7)
    recent = set(
        KnowledgeItem.objects.filter(created_at__gte=since)
        .values_list("knowledge_type", flat=True)
        .distinct()
        .order_by()
    )
    stale = sorted(
        t
        for t in recent
        if t in registry and not KnowledgeItem.objects.active().fresh(0.5, [t]).exists()
    )
    return Alert(
        "stale_knowledge",
        WARNING,
        bool(stale),
        len(stale),
        0,
        "no fresh item (freshness >= 0.5) of: " + ", ".join(stale)
        if stale
        else "every recently broadcast type has fresh knowledge",
    )


def unresolved_conflicts() -> Alert:
    """The plan's alert: more than 10 conflicts waiting for a decision."""
    from conflicts.stats import stats_section

    n = stats_section()["unresolved"]
    return Alert(
        "unresolved_conflicts",
        WARNING,
        n > 10,
        n,
        10,
        f"{n} conflicts open or pending review (queue: /dashboard/conflicts/)",
    )


def alert_metrics():
    """``kx_alert_firing`` on ``/metrics`` (registered by ``DashboardConfig.ready``)."""
    firing = GaugeMetricFamily(
        "kx_alert_firing",
        "1 when an alert rule is firing (dashboard/alerts.py).",
        labels=["alert", "level"],
    )
    for alert in evaluate():
        firing.add_metric([alert.name, alert.level], 1 if alert.firing else 0)
    yield firing


for _name, _rule in [
    ("broadcast_rate_drop", broadcast_rate_drop),
    ("api_latency", api_latency),
    ("websocket_drop", websocket_drop),
    ("unresolved_conflicts", unresolved_conflicts),
    ("database_latency", database_latency),
    ("stale_knowledge", stale_knowledge),
]:
    register(_name, _rule)
