"""Prometheus metrics.

Per-process counters and histograms (requests, broadcasts) plus gauges read from the
database at scrape time (items, log top, inbox lag), which are the same whichever process
answers the scrape.
"""

from __future__ import annotations

from collections import Counter

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily

from knowledge import metrics as knowledge_metrics

REGISTRY = CollectorRegistry(auto_describe=True)
# Counted at their source (knowledge/metrics.py: the broadcast pipeline, the inbox read).
REGISTRY.register(knowledge_metrics.BROADCASTS)
REGISTRY.register(knowledge_metrics.RECEIVED)

REQUEST_LATENCY = Histogram(
    "kx_http_request_duration_seconds",
    "API request latency by route and method.",
    ["route", "method", "status"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
    registry=REGISTRY,
)


class DatabaseCollector:
    """Gauges computed from the database at scrape time.

    They are the same whichever process answers, so they are computed at most once per
    ``metrics_cache_seconds`` and kept in the shared cache (``knowledge.stats.shared_aggregate``):
    frequent or parallel scrapes do not each run the aggregates (issue 10, finding 4). The
    items by type and status come from the item groups ``GET stats`` counts too (one count of
    the table for both). The per-process cache counters are read live."""

    CACHE_KEY = "kx:metrics:database"

    def describe(self):
        return []  # no query at registration time

    def collect(self):
        from knowledge import cache as knowledge_cache
        from knowledge.stats import item_groups, shared_aggregate

        items = GaugeMetricFamily(
            "kx_knowledge_items",
            "Knowledge items by type and status.",
            labels=["knowledge_type", "status"],
        )
        by_type_status = Counter()
        for knowledge_type, status, *_, n, _last_24h in item_groups().rows:
            by_type_status[knowledge_type, status] += n
        for (knowledge_type, status), n in sorted(by_type_status.items()):
            items.add_metric([knowledge_type, status], n)
        yield items
        yield from shared_aggregate(self.CACHE_KEY, lambda: list(self._database_families()))
        stats = knowledge_cache.stats()
        yield GaugeMetricFamily(
            "kx_cache_hits", "Query cache hits (this process).", value=stats["hits"]
        )
        yield GaugeMetricFamily(
            "kx_cache_misses", "Query cache misses (this process).", value=stats["misses"]
        )

    def _database_families(self):
        from knowledge.events import log_position
        from knowledge.models import InboxCursor

        pos = log_position()
        yield GaugeMetricFamily("kx_event_log_top", "Highest event seq.", value=pos.top)
        lag = GaugeMetricFamily(
            "kx_inbox_lag_events",
            "Events between a worker's cursor and the top.",
            labels=["worker"],
        )
        for name, position in InboxCursor.objects.values_list("worker__name", "position"):
            lag.add_metric([name], max(pos.top - position, 0))
        yield lag
        for provider in list(EXTRA_COLLECTORS):
            yield from provider()


#: More gauge providers (callables yielding metric families), registered by
#: ``DashboardConfig.ready``: alerts, conflicts, live connections.
EXTRA_COLLECTORS: list = []

REGISTRY.register(DatabaseCollector())
