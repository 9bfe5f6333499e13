from __future__ import annotations

import hmac
from datetime import UTC, datetime

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from config.product import product_settings
from dashboard import timeseries
from dashboard.metrics import REGISTRY
from dashboard.workers import WINDOWS, worker_rows
from knowledge.errors import ActionError


def favicon(request):
    """``/favicon.ico``: the static icon (our pages link it; the admin and DRF's pages ask
    for this path)."""
    return redirect(static("favicon.svg"))


def metrics_view(request):
    """Prometheus text format, no secrets. With ``metrics_token`` set, only for
    ``Authorization: Bearer <metrics_token>``."""
    token = product_settings().metrics_token
    if token:
        sent = request.META.get("HTTP_AUTHORIZATION", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            response = HttpResponse(
                "metrics need a bearer token\n", status=401, content_type="text/plain"
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


@staff_member_required
def index(request):
    """Monitoring overview: health, alerts, the numbers of GET stats, workers, knowledge by type."""
    from identity.models import Worker
    from knowledge.health import run_health_checks
    from knowledge.models import InboxCursor
    from knowledge.registry import registry
    from knowledge.stats import collect_stats

    stats = collect_stats()
    top = stats["events"]["top"]
    positions = dict(InboxCursor.objects.values_list("worker_id", "position"))
    workers = [
        {
            "worker": w,
            "position": positions.get(w.pk, 0),
            "behind_seqs": max(top - positions.get(w.pk, 0), 0),
        }
        for w in Worker.objects.order_by("name")
    ]
    by_type = stats["by_type"]
    peak = max(by_type.values(), default=0) or 1
    types = [
        {
            "name": kt.name,
            "count": by_type.get(kt.name, 0),
            "pct": round(100 * by_type.get(kt.name, 0) / peak),
            "decay_hours": round(kt.decay_seconds / 3600, 1),
        }
        for kt in registry.all()
    ]
    alerts = alert_rows()
    return render(
        request,
        "dashboard/index.html",
        {
            "stats": stats,
            "health": run_health_checks(),
            "alerts": alerts,
            "firing": [a for a in alerts if a.firing],
            "workers": workers,
            "types": types,
        },
    )


def alert_rows() -> list:
    """The rules as the alert checker stored them (a page never measures), firing first."""
    from dashboard.alerts import specs
    from dashboard.models import AlertRule

    order = {"firing": 0, "pending": 1, "resolved": 2, "ok": 3}
    rules = list(AlertRule.objects.filter(enabled=True))
    known = specs()
    for rule in rules:
        spec = known.get(rule.name)
        rule.link = reverse(spec.link) if spec and spec.link else ""
    return sorted(rules, key=lambda r: (order.get(r.state, 9), r.level != "critical", r.name))


@staff_member_required
def alerts(request):
    """Every rule's stored state and the history of its flips (newest first)."""
    from dashboard.models import AlertFlip, AlertRule

    flips = AlertFlip.objects.select_related("rule").order_by("-id")
    rule = request.GET.get("rule") or ""
    if rule:
        flips = flips.filter(rule__name=rule)
    rows = alert_rows()
    return render(
        request,
        "dashboard/alerts.html",
        {
            "alerts": rows,
            "firing": [a for a in rows if a.firing],
            "flips": flips[:200],
            "rule": rule,
            "rule_names": list(AlertRule.objects.values_list("name", flat=True)),
            "last_check": max((a.checked_at for a in rows if a.checked_at), default=None),
        },
    )


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
            "websocket_enabled": product_settings().websocket_enabled,
        },
    )


@staff_member_required
def live_connections(request):
    """Who is connected to the live feed, since when, with which filters (every process)."""
    from knowledge import relay

    snaps = relay.all_snapshots()
    rows = sorted(
        (
            {
                **c,
                "process": s["process"],
                "connected": datetime.fromtimestamp(c["connected_at"], UTC),
            }
            for s in snaps
            for c in s["connections"]
        ),
        key=lambda c: c["connected_at"],
    )
    return render(
        request,
        "dashboard/live_connections.html",
        {"rows": rows, "stats": relay.connection_stats()},
    )


@staff_member_required
def flow(request):
    """The knowledge-flow picture: worker -> type -> worker over a window (static/dashboard/flow.js
    draws it from GET /api/knowledge/flow)."""
    return render(request, "dashboard/flow.html", {"windows": WINDOWS})


@staff_member_required
def workers(request):
    """Every worker side by side: its reported state, counters, what it broadcast and received
    by type over the window (the rollups), its inbox lag and, once its SDK reports one, its
    local spool."""
    window_text = request.GET.get("window") or "60m"
    try:
        window = timeseries.parse_window(window_text)
    except ActionError as exc:
        return render(
            request,
            "dashboard/workers.html",
            {"error": exc.message, "windows": WINDOWS},
            status=400,
        )
    return render(
        request,
        "dashboard/workers.html",
        {
            "rows": worker_rows(window),
            "window": window_text,
            "windows": WINDOWS,
        },
    )
