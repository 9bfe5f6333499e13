"""Per-minute time series: written by the alert checker, read by the API and the pages.

``rollup()`` is one incremental pass (``manage.py check_alerts`` runs it after each alert
pass; docs/monitoring.md, "Time series"):

- **events** after the last seq it counted (the one resume rule, knowledge/resume.py: a new
  epoch skips to the top): ``knowledge_broadcast`` by minute, type and source;
  ``conflict_detected`` (opened); ``knowledge_resolved`` with ``decision`` ``auto`` or
  ``dissolved`` (auto-resolved) or a person's decision (decided);
- **receptions**: for each worker whose inbox delivered past the position counted last time,
  the broadcasts its inbox filter delivered in between, by the minute of the broadcast, type,
  recipient and source (what the knowledge-flow picture draws);
- **gauges** of the current minute: mean freshness of active items by type; API requests and
  latency P50/P95/P99 from the differences of the web process's request histogram
  (``kx_http_request_duration_seconds``, long polls left out) and live connections
  (``kx_ws_connections``), both read from ``/metrics`` (the checker is another process; it
  reads them as Prometheus would);
- minutes older than ``timeseries_retention_hours`` are deleted.

Counts and positions are written in one transaction, with the state row locked: a second
pass (or a second checker) counts nothing twice. Nothing here runs on a page view.
"""

from __future__ import annotations

import logging
import math
import re
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, ExpressionWrapper, F, FloatField, Q, Sum, Value
from django.db.models.functions import Exp, Greatest, Least, TruncMinute
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from config.product import product_settings
from conflicts.choices import Decision
from dashboard.choices import Series
from dashboard.latency import quantile
from dashboard.models import RollupPoint, RollupState
from identity.models import Worker
from knowledge.actions import InboxFilter, get_subscription
from knowledge.choices import EventKind, ItemStatus
from knowledge.errors import ActionError
from knowledge.events import log_position
from knowledge.models import Event, InboxCursor, KnowledgeItem
from knowledge.registry import registry
from knowledge.resume import resume
from knowledge.scopes import read_types

log = logging.getLogger(__name__)

LATENCY_METRIC = "kx_http_request_duration_seconds"
LONG_POLL_ROUTE = "api/knowledge/events"  # waits on purpose (as the latency alert)
AUTO_DECISIONS = {Decision.AUTO.value, Decision.DISSOLVED.value}
QUANTILES = {
    Series.API_LATENCY_P50: 0.5,
    Series.API_LATENCY_P95: 0.95,
    Series.API_LATENCY_P99: 0.99,
}
# The API answers at most this many points per line (longer windows are merged into steps).
MAX_POINTS = 720

Key = tuple  # (minute, series, knowledge_type, worker, peer, targeted)


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


@dataclass
class RollupResult:
    events: int  # events read from the log
    receptions: int  # inbox deliveries counted
    scraped: bool  # the web process's metrics were read
    pruned: int  # rows past retention deleted


# --- Writing (the checker) -------------------------------------------------------------------


def rollup(now: datetime | None = None, metrics_text: str | None = None) -> RollupResult:
    """One incremental pass (see the module docstring). ``metrics_text`` is the web
    process's ``/metrics`` text; None reads it from ``scrape_url()`` (before the transaction,
    so no lock is held during the request)."""
    now = now or timezone.now()
    if metrics_text is None:
        metrics_text = fetch_metrics()
    minute = minute_of(now)
    cutoff = minute - timedelta(hours=product_settings().timeseries_retention_hours)
    counts: dict[Key, float] = defaultdict(float)
    gauges: dict[Key, tuple[float, int]] = {}
    with transaction.atomic():
        state, _ = RollupState.objects.select_for_update().get_or_create(id=1)
        pos = log_position()
        new_epoch = bool(state.epoch) and state.epoch != pos.epoch
        start = resume(state.last_seq, state.epoch or None, pos)
        n_events = _count_events(start.position, pos.top, cutoff, counts)
        n_received = _count_receptions(state, pos.top, cutoff, counts, baseline=new_epoch)
        state.epoch, state.last_seq = pos.epoch, pos.top
        _freshness(now, minute, gauges)
        scraped = bool(metrics_text) and _process_metrics(state, minute, metrics_text, gauges)
        _write(counts, gauges)
        pruned, _ = RollupPoint.objects.filter(minute__lt=cutoff).delete()
        state.updated_at = now
        state.save()
    return RollupResult(n_events, n_received, scraped, pruned)


def _count_events(since: int, top: int, cutoff: datetime, counts: dict) -> int:
    events = Event.objects.filter(seq__gt=since, seq__lte=top, created_at__gte=cutoff)
    n = events.count()
    if not n:
        return 0
    grouped = (
        events.filter(kind__in=[EventKind.KNOWLEDGE_BROADCAST, EventKind.CONFLICT_DETECTED])
        .annotate(m=TruncMinute("created_at"))
        .values_list("m", "kind", "knowledge_type", "source", "is_targeted")
        .annotate(n=Count("seq"))
        .order_by()
    )
    for m, kind, ktype, source, targeted, count in grouped:
        if kind == EventKind.KNOWLEDGE_BROADCAST:
            counts[(m, Series.BROADCASTS.value, ktype, source, "", targeted)] += count
        else:
            counts[(m, Series.CONFLICTS_OPENED.value, ktype, "", "", targeted)] += count
    resolved = (
        events.filter(kind=EventKind.KNOWLEDGE_RESOLVED)
        .annotate(m=TruncMinute("created_at"))
        .values_list("m", "knowledge_type", "is_targeted", "data__decision")
        .annotate(n=Count("seq"))
        .order_by()
    )
    for m, ktype, targeted, decision, count in resolved:
        series = (
            Series.CONFLICTS_AUTO_RESOLVED
            if decision in AUTO_DECISIONS
            else Series.CONFLICTS_DECIDED
        )
        counts[(m, series.value, ktype, "", "", targeted)] += count
    return n


def _count_receptions(
    state: RollupState, top: int, cutoff: datetime, counts: dict, *, baseline: bool
) -> int:
    """Broadcasts each worker's inbox delivered since the position counted last time (a
    worker seen for the first time: everything it was delivered that the log still holds).
    After a new epoch every position is taken as it stands, nothing counted."""
    done = {} if baseline else dict(state.delivered)
    total = 0
    for cursor in InboxCursor.objects.select_related("worker").order_by("worker_id"):
        key = str(cursor.worker_id)
        upto = min(cursor.delivered, top)
        before = upto if baseline else done.get(key, 0)
        if upto > before:
            total += _receptions_of(cursor.worker, before, upto, cutoff, counts)
        done[key] = upto  # below ``before`` after a state clear: start again from there
    state.delivered = done
    return total


def _receptions_of(worker: Worker, after: int, upto: int, cutoff: datetime, counts: dict) -> int:
    flt = InboxFilter(worker, get_subscription(worker))
    rows = (
        Event.objects.filter(
            flt.q(),
            kind=EventKind.KNOWLEDGE_BROADCAST,
            seq__gt=after,
            seq__lte=upto,
            created_at__gte=cutoff,
        )
        .order_by("seq")
        .iterator(chunk_size=2000)
    )
    n = 0
    for event in rows:
        if flt.matches(event):
            key = (
                minute_of(event.created_at),
                Series.RECEPTIONS.value,
                event.knowledge_type,
                worker.name,
                event.source,
                event.is_targeted,
            )
            counts[key] += 1
            n += 1
    return n


def _freshness(now: datetime, minute: datetime, gauges: dict) -> None:
    """Sum and number of active items' freshness per type (exp(-age/decay), clamped so an
    old item is 0 instead of a floating-point underflow on PostgreSQL)."""
    now_ts = now.timestamp()
    for kt in registry.all():
        exponent = ExpressionWrapper(
            (F("observed_ts") - Value(now_ts)) / Value(float(kt.decay_seconds)),
            output_field=FloatField(),
        )
        rows = (
            KnowledgeItem.objects.filter(knowledge_type=kt.name, status=ItemStatus.ACTIVE)
            .values_list("is_targeted")
            .annotate(
                s=Sum(Exp(Least(Greatest(exponent, Value(-50.0)), Value(0.0)))),
                n=Count("id"),
            )
            .order_by()
        )
        for targeted, total, n in rows:
            key = (minute, Series.FRESHNESS.value, kt.name, "", "", targeted)
            gauges[key] = (float(total or 0.0), n)


DEFAULT_SCRAPE_URL = "http://127.0.0.1:8000/metrics"
_scrape_failing = False  # log a failing scrape once, not every pass


def scrape_url() -> str:
    """The web process's ``/metrics``: ``timeseries_scrape_url``, else the default port on
    this machine (``make run`` sets the variable from its ``HOST``/``PORT``: the Procfile
    runner gives every process its own ``PORT``, so the checker cannot read the web's)."""
    return product_settings().timeseries_scrape_url or DEFAULT_SCRAPE_URL


def fetch_metrics(url: str | None = None, timeout: float = 2.0) -> str | None:
    """The Prometheus text of ``url`` (default ``scrape_url()``), or None if it does not
    answer (then this pass writes no latency or connection point)."""
    global _scrape_failing
    request = urllib.request.Request(url or scrape_url())
    token = product_settings().metrics_token
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode()
    except (OSError, ValueError) as exc:
        if not _scrape_failing:
            log.warning(
                "time series: no metrics from %s (%s); no latency or connection points "
                "until it answers (KE_TIMESERIES_SCRAPE_URL)",
                request.full_url,
                exc,
            )
        _scrape_failing = True
        return None
    if _scrape_failing:
        log.warning("time series: metrics from %s again", request.full_url)
    _scrape_failing = False
    return text


def _process_metrics(state: RollupState, minute: datetime, text: str, gauges: dict) -> bool:
    try:
        families = {f.name: f for f in text_string_to_metric_families(text)}
    except ValueError:
        log.warning("time series: the metrics text does not parse")
        return False
    ws = families.get("kx_ws_connections")
    if ws and ws.samples:
        gauges[(minute, Series.LIVE_CONNECTIONS.value, "", "", "", False)] = (
            ws.samples[0].value,
            1,
        )
    latency = families.get(LATENCY_METRIC)
    if latency is None:
        return True
    cumulative: dict[str, float] = defaultdict(float)
    for sample in latency.samples:
        if sample.name.endswith("_bucket") and sample.labels.get("route") != LONG_POLL_ROUTE:
            cumulative[sample.labels["le"]] += sample.value
    previous = state.latency.get("cumulative")
    minute_key = minute.isoformat()
    state.latency = {
        "cumulative": dict(cumulative),
        **_minute_buckets(state, minute_key, previous, cumulative),
    }
    buckets = state.latency.get("buckets")
    if previous is None or not buckets:
        return True  # the first reading is the baseline
    requests = buckets.get("+Inf", 0.0)
    gauges[(minute, Series.API_REQUESTS.value, "", "", "", False)] = (requests, 1)
    if requests > 0:
        for series, q in QUANTILES.items():
            ms = histogram_quantile(q, buckets) * 1000
            gauges[(minute, series.value, "", "", "", False)] = (round(ms, 3), 1)
    return True


def _minute_buckets(state: RollupState, minute_key: str, previous, cumulative) -> dict:
    """This minute's requests per bucket: the difference since the last reading (the
    whole reading after a restart of the web process: counts went down), added to what
    earlier passes of the same minute saw."""
    if previous is None:
        return {}
    restarted = any(cumulative.get(le, 0.0) < n for le, n in previous.items())
    delta = {
        le: n if restarted else max(n - previous.get(le, 0.0), 0.0) for le, n in cumulative.items()
    }
    if state.latency.get("minute") == minute_key:
        earlier = state.latency.get("buckets") or {}
        delta = {le: n + earlier.get(le, 0.0) for le, n in delta.items()}
    return {"minute": minute_key, "buckets": delta}


def histogram_quantile(q: float, buckets: dict[str, float]) -> float:
    """The ``q`` quantile of cumulative Prometheus bucket counts (``le`` -> count), by
    ``dashboard.latency.quantile``; 0 without observations."""
    bounds = sorted((float(le), n) for le, n in buckets.items())
    counts = [n - (bounds[i - 1][1] if i else 0.0) for i, (_, n) in enumerate(bounds)]
    return quantile(q, [le for le, _ in bounds], counts) or 0.0


def _write(counts: dict[Key, float], gauges: dict[Key, tuple[float, int]]) -> None:
    keys = set(counts) | set(gauges)
    if not keys:
        return
    minutes = [k[0] for k in keys]
    existing = {
        row.key: row
        for row in RollupPoint.objects.filter(
            minute__gte=min(minutes),
            minute__lte=max(minutes),
            series__in={k[1] for k in keys},
        )
    }
    changed, new = [], []
    for key in keys:
        row = existing.get(key)
        if row is None:
            m, series, ktype, worker, peer, targeted = key
            row = RollupPoint(
                minute=m,
                series=series,
                knowledge_type=ktype,
                worker=worker,
                peer=peer,
                targeted=targeted,
            )
            new.append(row)
        else:
            changed.append(row)
        if key in counts:
            row.value += counts[key]
        else:
            row.value, row.samples = gauges[key]
    RollupPoint.objects.bulk_update(changed, ["value", "samples"], batch_size=500)
    RollupPoint.objects.bulk_create(new, batch_size=500)


# --- Reading (the API and the pages) ---------------------------------------------------------

#: The series the API serves and the stored series each line comes from.
API_SERIES = {
    "broadcasts": "count",
    "receptions": "count",
    "conflicts": "count",
    "api_requests": "count",
    "api_latency": "ms",
    "live_connections": "connections",
    "freshness": "mean freshness",
}
BREAKDOWNS = ("type", "worker", "")
_WINDOW = re.compile(r"^(\d{1,6})([mhd])$")


def parse_window(text: str | None, default: str = "60m") -> int:
    """Minutes of a window like ``15m``, ``6h``, ``2d``; at most the retention."""
    text = (text or default).strip()
    match = _WINDOW.match(text)
    if not match or int(match.group(1)) == 0:
        raise ActionError(f"{text!r} is not a window like 15m, 6h or 2d", "window")
    minutes = int(match.group(1)) * {"m": 1, "h": 60, "d": 1440}[match.group(2)]
    limit = product_settings().timeseries_retention_hours * 60
    if minutes > limit:
        raise ActionError(
            f"{text!r} is longer than the retention of the time series ({limit // 60} h)",
            "window",
        )
    return minutes


def parse_series(text: str | None) -> list[str]:
    names = [s.strip() for s in (text or "").split(",") if s.strip()] or list(API_SERIES)
    unknown = [s for s in names if s not in API_SERIES]
    if unknown:
        raise ActionError(
            f"unknown series {', '.join(unknown)} (known: {', '.join(API_SERIES)})", "series"
        )
    return list(dict.fromkeys(names))


def parse_by(text: str | None) -> str:
    by = (text or "").strip()
    if by not in BREAKDOWNS:
        raise ActionError(f"{by!r}: break broadcasts and receptions down by type or worker", "by")
    return by


def _visible_points(viewer: Worker | None, since: datetime, until: datetime):
    rows = RollupPoint.objects.filter(minute__gte=since, minute__lte=until)
    if viewer is not None:  # a worker: public events of the types it may read
        rows = rows.filter(targeted=False)
        readable = read_types(viewer)
        if readable is not None:
            rows = rows.filter(Q(knowledge_type="") | Q(knowledge_type__in=sorted(readable)))
    return rows


def _grid(window: int, now: datetime) -> tuple[datetime, datetime, int, int]:
    """(first minute, last minute, step in minutes, number of points)."""
    last = minute_of(now)
    step = max(1, math.ceil(window / MAX_POINTS))
    points = math.ceil(window / step)
    first = last - timedelta(minutes=step * points - 1)
    return first, last, step, points


def series_data(
    names: list[str], window: int, by: str = "", viewer: Worker | None = None, now=None
) -> dict:
    """The series ``names`` over the last ``window`` minutes for ``viewer`` (None: a
    person, everything), on a grid of at most ``MAX_POINTS`` steps. Counts are summed per
    step (0 when nothing happened); gauges are the step's largest value (latency,
    connections) or its mean (freshness), ``null`` where nothing was sampled."""
    now = now or timezone.now()
    first, last, step, points = _grid(window, now)
    stored = {
        "broadcasts": [Series.BROADCASTS],
        "receptions": [Series.RECEPTIONS],
        "conflicts": [
            Series.CONFLICTS_OPENED,
            Series.CONFLICTS_AUTO_RESOLVED,
            Series.CONFLICTS_DECIDED,
        ],
        "api_requests": [Series.API_REQUESTS],
        "api_latency": list(QUANTILES),
        "live_connections": [Series.LIVE_CONNECTIONS],
        "freshness": [Series.FRESHNESS],
    }
    wanted = {s.value for name in names for s in stored[name]}
    rows = _visible_points(viewer, first, last).filter(series__in=wanted)
    acc: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(dict)
    for minute, series, ktype, worker, value, samples in rows.values_list(
        "minute", "series", "knowledge_type", "worker", "value", "samples"
    ):
        name, line = _line_of(series, ktype, worker, by)
        i = int((minute - first).total_seconds() // 60) // step
        cell = acc[(name, line)].setdefault(i, [0.0, 0.0])
        if name in ("api_latency", "live_connections"):
            cell[0] = max(cell[0], value)
            cell[1] = 1
        else:
            cell[0] += value
            cell[1] += samples
    out = {}
    for name in names:
        lines = {}
        for (series_name, line), cells in sorted(acc.items()):
            if series_name == name:
                lines[line] = [_value(name, cells.get(i)) for i in range(points)]
        if name in ("broadcasts", "receptions", "conflicts", "api_requests") and not lines:
            default = ["opened", "auto_resolved", "decided"] if name == "conflicts" else ["total"]
            lines = {line: [0] * points for line in default}
        out[name] = {"unit": API_SERIES[name], "lines": lines}
    return {
        "window_minutes": window,
        "step_seconds": step * 60,
        "from": first.isoformat(),
        "to": (last + timedelta(minutes=1)).isoformat(),
        "timestamps": [
            int((first + timedelta(minutes=i * step)).timestamp()) for i in range(points)
        ],
        "series": out,
    }


def _line_of(series: str, ktype: str, worker: str, by: str) -> tuple[str, str]:
    if series in (Series.BROADCASTS, Series.RECEPTIONS):
        return series, {"type": ktype, "worker": worker}.get(by, "total")
    if series.startswith("conflicts_"):
        return "conflicts", series.removeprefix("conflicts_")
    if series in QUANTILES:
        return "api_latency", series.removeprefix("api_latency_")
    if series == Series.FRESHNESS:
        return "freshness", ktype
    return series, "total"


def _value(name: str, cell: list[float] | None):
    if name in ("broadcasts", "receptions", "conflicts", "api_requests"):
        return int(cell[0]) if cell else 0
    if cell is None:
        return None
    if name == "freshness":
        return round(cell[0] / cell[1], 4) if cell[1] else None
    return round(cell[0], 3)


def flow_data(window: int, viewer: Worker | None = None, now=None) -> dict:
    """Who broadcast which types and who received them over the last ``window`` minutes:
    ``broadcasts`` (source -> type) and ``receptions`` (source -> type -> receiver), with
    per-node totals for the three columns of the picture."""
    now = now or timezone.now()
    last = minute_of(now)
    first = last - timedelta(minutes=window - 1)
    rows = _visible_points(viewer, first, last)
    sent = (
        rows.filter(series=Series.BROADCASTS)
        .values_list("worker", "knowledge_type")
        .annotate(n=Sum("value"))
        .order_by("worker", "knowledge_type")
    )
    got = (
        rows.filter(series=Series.RECEPTIONS)
        .values_list("peer", "knowledge_type", "worker")
        .annotate(n=Sum("value"))
        .order_by("peer", "knowledge_type", "worker")
    )
    broadcasts = [{"source": w, "type": t, "count": int(n)} for w, t, n in sent if n]
    receptions = [
        {"source": s, "type": t, "receiver": r, "count": int(n)} for s, t, r, n in got if n
    ]
    sources, types, receivers = defaultdict(int), defaultdict(lambda: [0, 0]), defaultdict(int)
    for b in broadcasts:
        sources[b["source"]] += b["count"]
        types[b["type"]][0] += b["count"]
    for r in receptions:
        types[r["type"]][1] += r["count"]
        receivers[r["receiver"]] += r["count"]
    return {
        "window_minutes": window,
        "from": first.isoformat(),
        "to": (last + timedelta(minutes=1)).isoformat(),
        "sources": [{"name": k, "count": v} for k, v in sorted(sources.items())],
        "types": [
            {"name": k, "broadcast": v[0], "received": v[1]} for k, v in sorted(types.items())
        ],
        "receivers": [{"name": k, "count": v} for k, v in sorted(receivers.items())],
        "broadcasts": broadcasts,
        "receptions": receptions,
    }


def per_worker_totals(window: int, now=None) -> dict[str, dict[str, dict[str, int]]]:
    """``{worker: {"broadcast": {type: n}, "received": {type: n}}}`` over the window (the
    worker comparison page; people only)."""
    now = now or timezone.now()
    last = minute_of(now)
    rows = (
        RollupPoint.objects.filter(
            minute__gte=last - timedelta(minutes=window - 1),
            series__in=[Series.BROADCASTS, Series.RECEPTIONS],
        )
        .values_list("series", "worker", "knowledge_type")
        .annotate(n=Sum("value"))
        .order_by()
    )
    out: dict = defaultdict(lambda: {"broadcast": {}, "received": {}})
    for series, worker, ktype, n in rows:
        side = "broadcast" if series == Series.BROADCASTS else "received"
        out[worker][side][ktype] = int(n)
    return out
