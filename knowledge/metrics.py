"""Throughput counters of this process: items stored by broadcasts, events delivered to
inboxes. Counted where it happens (the broadcast pipeline, the inbox read), after commit;
``dashboard/metrics.py`` registers them on ``/metrics``. Per process, as Prometheus counters
are: scrape every server process (the web processes do all broadcasts and inbox reads, the
built-in workers reach them over HTTP)."""

from __future__ import annotations

import collections

from prometheus_client import Counter

BROADCASTS = Counter(
    "kx_broadcasts",  # exported as kx_broadcasts_total
    "Items stored by broadcasts (this process), by type and outcome.",
    ["knowledge_type", "outcome"],
    registry=None,
)
RECEIVED = Counter(
    "kx_inbox_delivered",  # exported as kx_inbox_delivered_total
    "Events delivered to a worker's inbox for the first time (this process).",
    ["worker"],
    registry=None,
)


def count_broadcasts(pairs: list[tuple[str, str]]) -> None:
    """``pairs``: (knowledge_type, outcome) of each stored item (one ``labels`` lookup per
    distinct pair, not per item)."""
    for (knowledge_type, outcome), n in collections.Counter(pairs).items():
        BROADCASTS.labels(knowledge_type, outcome).inc(n)


def count_received(worker: str, n: int) -> None:
    RECEIVED.labels(worker).inc(n)
