"""Live-feed connection tracking in ``GET stats`` and ``/metrics``.

Connections are tracked in memory by each process's relay (knowledge/relay.py) and mirrored
to the cache every few seconds; no database model: a connection lives seconds to hours, a
row per connect/disconnect would be write traffic for nothing, and rows of a process killed
with -9 would lie until someone cleaned them up. A cache entry expires on its own (30 s).
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from knowledge import relay


def stats_section() -> dict:
    return relay.connection_stats()


def collect_metrics():
    snaps = relay.all_snapshots()
    conns = [c for s in snaps for c in s["connections"]]
    yield GaugeMetricFamily(
        "kx_ws_connections",
        "Open live-feed WebSocket connections (all processes).",
        value=len(conns),
    )
    yield GaugeMetricFamily(
        "kx_ws_processes", "Server processes with a live-feed relay.", value=len(snaps)
    )
    queued = GaugeMetricFamily(
        "kx_ws_queued_frames_max",
        "Largest per-connection send queue.",
        value=max((c["queued"] for c in conns), default=0),
    )
    yield queued
    delivered = CounterMetricFamily(
        "kx_ws_delivered", "Events delivered by relays (all processes).", labels=[]
    )
    delivered.add_metric([], sum(s["stats"].get("delivered", 0) for s in snaps))
    yield delivered
    slow = CounterMetricFamily(
        "kx_ws_slow_closes", "Connections closed 4008 (too slow).", labels=[]
    )
    slow.add_metric([], sum(s["stats"].get("slow_closes", 0) for s in snaps))
    yield slow
    refused = CounterMetricFamily(
        "kx_ws_handshakes_refused",
        "Socket handshakes refused as busy (past ws_handshakes_in_flight).",
        labels=[],
    )
    refused.add_metric([], sum(s["stats"].get("handshakes_refused", 0) for s in snaps))
    yield refused
