from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from config.product import product_settings
from identity.models import Worker
from identity.permissions import request_worker
from knowledge import actions, item_hooks, live_auth
from knowledge.api import lean, presenters
from knowledge.api.serializers import (
    AckSerializer,
    BroadcastResultSerializer,
    BroadcastSerializer,
    BulkBroadcastSerializer,
    BulkResponseSerializer,
    EventsQuerySerializer,
    EventsResponseSerializer,
    InboxResponseSerializer,
    ItemSerializer,
    QueryResponseSerializer,
    QuerySerializer,
    StateSerializer,
    SubscriptionOutSerializer,
    SubscriptionSerializer,
    ValidateSerializer,
)
from knowledge.choices import Urgency
from knowledge.errors import ActionError
from knowledge.events import (
    FeedFilter,
    log_position,
    read_events,
)
from knowledge.health import run_health_checks
from knowledge.limits import PREFETCHED_VALUES, long_poll_slot
from knowledge.long_poll import LongPoll, as_async_view, parked
from knowledge.models import KnowledgeItem
from knowledge.query import run_query_cached
from knowledge.registry import registry
from knowledge.resume import INBOX_STARTS, resume
from knowledge.scopes import read_types
from knowledge.stats import collect_stats


def access_worker(request, name: str) -> Worker:
    """The named worker, if the caller may act for it: itself, or any worker for staff."""
    me = request_worker(request)
    if me is not None:
        if me.name != name:
            raise PermissionDenied(f"a worker token may only act for itself ({me.name!r})")
        return me
    worker = Worker.objects.filter(name=name).first()
    if worker is None:
        raise NotFound(f"no worker named {name!r}")
    return worker


def acting_source(request, declared: str | None) -> Worker:
    """The worker a broadcast is from: the token's worker, or the declared one for staff."""
    me = request_worker(request)
    if me is not None:
        if declared and declared != me.name:
            raise PermissionDenied(
                f"a worker broadcasts only as itself: source {declared!r} is not {me.name!r}"
            )
        return me
    if not declared:
        raise ActionError("people must name the source worker", "source")
    worker = Worker.objects.filter(name=declared, is_active=True).first()
    if worker is None:
        raise ActionError(f"unknown worker {declared!r}", "source")
    return worker


class BroadcastView(APIView):
    """Broadcast one knowledge item as the authenticated worker."""

    @extend_schema(
        request=BroadcastSerializer,
        responses={201: BroadcastResultSerializer, 200: BroadcastResultSerializer},
        description=(
            "201 with the stored item and the ids of conflicts it raised. 200 when the item "
            "refreshed the source's own item with the same claim, or when an idempotency_key "
            "retry returns the first result (replayed=true)."
        ),
    )
    def post(self, request):
        attrs = presenters.broadcast_attrs(request.data)
        worker = acting_source(request, attrs.get("source"))
        presenters.check_write_scope(worker, attrs["knowledge_type"])
        result = actions.do_broadcast(worker, BroadcastSerializer.input_from(attrs))
        return Response(result.as_dict(), status=presenters.broadcast_status(result))


class BulkBroadcastView(APIView):
    """Broadcast many items; each is stored or rejected on its own."""

    @extend_schema(request=BulkBroadcastSerializer, responses={200: BulkResponseSerializer})
    def post(self, request):
        envelope = presenters.bulk_envelope(request.data)
        worker = acting_source(request, envelope.get("source"))
        entries = presenters.broadcast_entries(worker, envelope["items"])
        results = actions.do_broadcast_many(worker, entries)
        return Response(presenters.bulk_answer(results, lean=envelope["lean"]))


QUERY_PARAMETERS = [
    OpenApiParameter(name, OpenApiTypes.STR, description=desc)
    for name, desc in [
        ("types", "comma-separated knowledge types"),
        ("sources", "comma-separated source workers"),
        ("urgency", "comma-separated urgencies (low, normal, high, critical)"),
        ("min_urgency", "minimum urgency"),
        ("min_freshness", "0..1, freshness now at least this (per type decay)"),
        ("min_confidence", "0..1"),
        ("max_confidence", "0..1"),
        ("status", "comma-separated: active (default), superseded, retracted, or any"),
        ("validation_status", "comma-separated: unvalidated, confirmed, disputed"),
        ("created_after", "ISO 8601, inclusive"),
        ("created_before", "ISO 8601, exclusive"),
        ("target", "items targeted at this worker"),
        ("subject", "exact subject, case-insensitive (as sent finds it, other case too)"),
        ("q", "text contained in the subject (case-insensitive)"),
        ("sort", "freshness, created_at, observed_at, confidence, urgency; '-' = descending"),
        ("limit", "page size, default 50"),
        ("cursor", "the 'next' value of the previous page"),
    ]
]


class QueryView(APIView):
    """Query knowledge with filters; every item carries its current freshness.

    A worker's plain ``GET`` is answered by the lean path (knowledge/api/lean.py) when it can
    be, with the same bytes; everything else goes through DRF as any view."""

    prefetch_keys = staticmethod(lean.prefetch_keys)  # read by knowledge/limits.py

    def dispatch(self, request, *args, **kwargs):
        response = lean.answer(self, request)
        if response is not None:
            return response
        return super().dispatch(request, *args, **kwargs)

    @extend_schema(parameters=QUERY_PARAMETERS, responses={200: QueryResponseSerializer})
    def get(self, request):
        return self._run(request, lean.query_data(request.query_params))

    @extend_schema(request=QuerySerializer, responses={200: QueryResponseSerializer})
    def post(self, request):
        if not isinstance(request.data, dict):
            raise ActionError("the body must be a JSON object", "non_field_errors")
        return self._run(request, request.data)

    def _run(self, request, data):
        result, hit = run_query_cached(
            presenters.parse_query(data),
            request_worker(request),
            getattr(request._request, PREFETCHED_VALUES, None),
            lean.page_slot(request._request),
        )
        return Response({**result, "cached": hit})


class ItemView(APIView):
    @extend_schema(responses={200: ItemSerializer})
    def get(self, request, pk: int):
        qs = KnowledgeItem.objects.select_related("source")
        me = request_worker(request)
        if me is not None:
            qs = qs.visible_to(me)
        return Response(item_hooks.mark_items([get_object_or_404(qs, pk=pk).as_dict()])[0])


class TypesView(APIView):
    """The type registry: schema, decay, interested workers, subject and claim fields."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response({"results": [kt.describe() for kt in registry.all()], "next": None})


class ReceiveView(APIView):
    """The next events of a worker's inbox after its durable cursor."""

    @extend_schema(
        parameters=[
            OpenApiParameter("limit", OpenApiTypes.INT, description="1..500, default 100"),
            OpenApiParameter(
                "start",
                OpenApiTypes.STR,
                enum=list(INBOX_STARTS),
                description="first read only: 'now' (default, from the worker's creation) "
                "or 'beginning' (every event the log holds); ignored once the inbox has a "
                "position",
            ),
            OpenApiParameter(
                "ack",
                OpenApiTypes.INT,
                description="acknowledge the previous page first (its 'ack'), then read: one "
                "call per page instead of a read and an ack. 409 if stale (behind the "
                "cursor), beyond what was offered, or from another epoch",
            ),
            OpenApiParameter(
                "epoch",
                OpenApiTypes.STR,
                description="with 'ack': the epoch of the page it acknowledges (409 if the "
                "log has another one now)",
            ),
        ],
        responses={200: InboxResponseSerializer},
    )
    def get(self, request, worker: str):
        target = access_worker(request, worker)
        params = request.query_params
        start = params.get("start", "now")
        if start not in INBOX_STARTS:
            raise ActionError(f"must be one of {', '.join(INBOX_STARTS)}", "start")
        limit = _int_param(params, "limit", 100)
        if not 1 <= limit <= 500:
            raise ActionError("must be between 1 and 500", "limit")
        ack = _int_param(params, "ack", None)
        page = actions.read_inbox(target, limit, start=start, ack=ack, epoch=params.get("epoch"))
        return Response(presenters.inbox_page(page))


def _int_param(params, name: str, default: int | None) -> int | None:
    """A query parameter as an integer (a 64-bit one), ``default`` when absent; 400 if not."""
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ActionError("must be an integer", name) from None
    if not -(2**63) <= value < 2**63:
        raise ActionError("out of range", name)
    return value


class AckView(APIView):
    @extend_schema(request=AckSerializer, responses={200: OpenApiTypes.OBJECT})
    def post(self, request, worker: str):
        target = access_worker(request, worker)
        ser = AckSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        cursor = actions.do_ack(target, ser.validated_data["seq"])
        return Response(presenters.ack_answer(target, cursor))


class ValidateView(APIView):
    @extend_schema(request=ValidateSerializer, responses={200: ItemSerializer})
    def post(self, request):
        ser = ValidateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        me = request_worker(request)
        qs = KnowledgeItem.objects.all()
        if me is not None:
            qs = qs.visible_to(me)
        item = qs.filter(pk=ser.validated_data["item"]).first()
        if item is None:
            raise ActionError(f"no item {ser.validated_data['item']}", "item", 404)
        item = actions.do_validate(
            item,
            ser.validated_data["verdict"],
            worker=me,
            user=None if me else request.user,
            note=ser.validated_data["note"],
        )
        return Response(item.as_dict())


class SubscribeView(APIView):
    do = staticmethod(actions.do_subscribe)

    @extend_schema(request=SubscriptionSerializer, responses={200: SubscriptionOutSerializer})
    def post(self, request):
        ser = SubscriptionSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        d = ser.validated_data
        me = request_worker(request)
        name = d.get("worker") or (me.name if me else None)
        if not name:
            raise ActionError("people must name the worker", "worker")
        worker = access_worker(request, name)
        kwargs = {"types": d["types"], "sources": d["sources"], "events": d["events"]}
        if self.do is actions.do_subscribe and d.get("min_urgency"):
            kwargs["min_urgency"] = int(Urgency.from_label(d["min_urgency"]))
        return Response(presenters.subscription_dict(self.do(worker, **kwargs)))


class UnsubscribeView(SubscribeView):
    do = staticmethod(actions.do_unsubscribe)


class StateView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, worker: str):
        return Response(presenters.worker_state(access_worker(request, worker)))

    @extend_schema(request=StateSerializer, responses={200: OpenApiTypes.OBJECT})
    def put(self, request, worker: str):
        target = access_worker(request, worker)
        ser = StateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        actions.do_update_state(target, ser.validated_data["state"])
        return Response(presenters.worker_state(target))


class ClearStateView(APIView):
    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT})
    def put(self, request, worker: str):
        target = access_worker(request, worker)
        actor = request_worker(request).name if request_worker(request) else f"user:{request.user}"
        actions.do_clear_state(target, actor=actor)
        return Response(presenters.worker_state(target))


class StatsView(APIView):
    """Totals, by type, by source, last 24 h, validation rate, log, cache, and the sections
    other apps add (conflicts, realtime)."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(collect_stats(request_worker(request)))


class EventsView(APIView):
    """The REST fallback of the live feed: events after ``since``, long-polling up to ``wait`` s."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "since", OpenApiTypes.INT, description="last seq seen; omit = live only"
            ),
            OpenApiParameter("epoch", OpenApiTypes.STR, description="the epoch 'since' belongs to"),
            OpenApiParameter("wait", OpenApiTypes.NUMBER, description="seconds to wait for events"),
            OpenApiParameter("limit", OpenApiTypes.INT),
            OpenApiParameter("types", OpenApiTypes.STR),
            OpenApiParameter("sources", OpenApiTypes.STR),
            OpenApiParameter("events", OpenApiTypes.STR, description="event kinds"),
        ],
        responses={200: EventsResponseSerializer},
    )
    def get(self, request):
        # knowledge/limits.py: long polls in flight per token. A parked poll keeps its slot
        # until it is answered (knowledge/long_poll.py releases it).
        slot = long_poll_slot(request)
        slot.__enter__()
        try:
            response = self._events(request)
        except BaseException:
            slot.__exit__(None, None, None)
            raise
        if getattr(response, "long_poll", None) is None:
            slot.__exit__(None, None, None)
        else:
            response.long_poll.slot = slot
        return response

    def _events(self, request):
        data = {
            k: request.query_params.getlist(k) if k in ("types", "sources", "events") else v
            for k, v in request.query_params.items()
        }
        ser = EventsQuerySerializer(data=data)
        ser.is_valid(raise_exception=True)
        d = ser.validated_data
        me = request_worker(request)
        if d.get("standing"):
            if me is None:
                raise ActionError("only workers have a standing subscription", "standing")
            flt = actions.InboxFilter(me, actions.get_subscription(me))
        else:
            flt = FeedFilter(
                kinds=frozenset(d.get("events", [])),
                types=frozenset(d.get("types", [])),
                sources=frozenset(d.get("sources", [])),
                viewer=me.name if me else None,
                read_types=read_types(me) if me else None,
            )
        answer = resume(d.get("since"), d.get("epoch"), log_position())
        events, scanned_to = read_events(answer.position, flt, d.get("limit", 500))
        # ``top`` is the scanned position, not the log's top read afterwards: an event that
        # commits between the two reads would otherwise be skipped by a live-only client
        # that resumes from ``top`` (docs/realtime.md, "Switching transports").
        body = {
            "epoch": answer.epoch,
            "since": d.get("since") if d.get("since") is not None else answer.top,
            "recovered": answer.recovered,
            "position": answer.position,
            "top": scanned_to,
            "next": scanned_to,
        }
        wait = min(d.get("wait", 0), product_settings().long_poll_max_wait)
        if events or wait <= 0:
            return Response({**body, "results": [e.as_message(answer.epoch) for e in events]})
        # Nothing yet: park on this process's relay (knowledge/long_poll.py), no thread held.
        return parked(
            body,
            LongPoll(
                body=body,
                filter=flt,
                label=str(request.user),
                viewer=flt.viewer,
                credential=live_auth.request_credential(request),
                position=scanned_to,
                wait=wait,
                limit=d.get("limit", 500),
            ),
        )


events_view = as_async_view(EventsView)


class HealthView(APIView):
    """Database, channel layer and cache checks. No authentication; no secrets."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses={
            code: inline_serializer(
                "Health",
                {"status": serializers.CharField(), "checks": serializers.DictField()},
            )
            for code in (200, 503)  # 503: the same report, with a failing check
        }
    )
    def get(self, request):
        report = run_health_checks()
        code = 200 if report["status"] != "fail" else 503
        return Response(report, status=code)
