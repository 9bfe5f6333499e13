from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse
from django.shortcuts import render
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dashboard.metrics import REGISTRY


def metrics_view(request):
    """Prometheus text format. No authentication, no secrets."""
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


@staff_member_required
def index(request):
    return render(request, "dashboard/index.html", {})


@staff_member_required
def live(request):
    """The live feed: the JS client over /ws/knowledge/ (session auth), polling as fallback."""
    from knowledge.choices import EventKind
    from knowledge.events import log_position
    from knowledge.registry import registry

    pos = log_position()  # read before anything the page shows (docs/realtime-client.md)
    return render(
        request,
        "dashboard/live.html",
        {
            "log_top": pos.top,
            "log_epoch": pos.epoch,
            "event_kinds": EventKind.values,
            "knowledge_types": registry.names(),
            "websocket_enabled": settings.KNOWLEDGE_EXCHANGE["websocket_enabled"],
        },
    )


@staff_member_required
def live_connections(request):
    """Who is connected to the live feed, since when, with which filters (every process)."""
    from knowledge import relay

    snaps = relay.all_snapshots()
    rows = sorted(
        ({**c, "process": s["process"], "connected": datetime.fromtimestamp(c["connected_at"], UTC)}
         for s in snaps for c in s["connections"]),
        key=lambda c: c["connected_at"],
    )
    return render(request, "dashboard/live_connections.html",
                  {"rows": rows, "stats": relay.connection_stats()})
