"""Conflict API (prefix ``/api/knowledge/``). Who may do what:

- list / detail / resolution-stats: workers (token) and staff; a worker sees only conflicts
  all of whose items it may see, and statistics over those (``Conflict.objects.visible_to``);
- ``conflicts/flag``: workers and staff; ``conflicts/<id>/request-resolution``: staff, and
  workers whose items take part, rate-limited per conflict and requester;
- ``resolve``: staff people only. Workers never decide conflicts: trust is learned from
  decisions, and a worker deciding its own conflicts would teach the exchange to trust it.
"""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from conflicts import actions
from conflicts.api.serializers import (
    ConflictDetailSerializer,
    ConflictSerializer,
    FlagSerializer,
    RequestResolutionSerializer,
    ResolveSerializer,
)
from conflicts.evidence import conflict_evidence
from conflicts.filtersets import ConflictFilterSet
from conflicts.models import Conflict, ConflictItem, Resolution
from conflicts.stats import resolution_stats
from identity.permissions import request_worker
from knowledge.api.errors import error_body


class IsStaffPerson(BasePermission):
    message = "Only staff people resolve conflicts; workers flag them or request resolution."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return request_worker(request) is None and bool(
            user and user.is_authenticated and user.is_staff
        )


class ConflictCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


class ConflictViewSet(viewsets.ReadOnlyModelViewSet):
    """Conflicts, newest first; filters in ``ConflictFilterSet``."""

    serializer_class = ConflictSerializer
    filterset_class = ConflictFilterSet
    pagination_class = ConflictCursorPagination

    def get_queryset(self):
        links = ConflictItem.objects.select_related("item__source").order_by("id")
        qs = (
            Conflict.objects.visible_to(request_worker(self.request))
            .select_related("flagged_by")
            .prefetch_related(Prefetch("links", queryset=links))
        )
        if self.action == "retrieve":
            qs = qs.prefetch_related(
                Prefetch("resolutions", queryset=Resolution.objects.order_by("id"))
            )
        return qs.order_by("-id")

    def get_serializer_class(self):
        return ConflictDetailSerializer if self.action == "retrieve" else ConflictSerializer

    def retrieve(self, request, *args, **kwargs):
        conflict = self.get_object()
        ser = ConflictDetailSerializer(
            conflict,
            context={
                "request": request,
                "evidence": conflict_evidence(conflict, request_worker(request)),
            },
        )
        return Response(ser.data)


class ResolveView(APIView):
    """A person decides a conflict: pick a winner item, accept the engine's proposal, reject
    every claim, or dismiss. 409 if it is already decided or changed since ``version``."""

    permission_classes = [IsStaffPerson]

    @extend_schema(request=ResolveSerializer, responses={200: ConflictSerializer})
    def post(self, request):
        ser = ResolveSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = ser.validated_data
        conflict = actions.do_resolve(
            data["conflict"],
            data["decision"],
            user=request.user,
            winner_item_id=data.get("winner_item"),
            note=data["note"],
            version=data.get("version"),
        )
        return Response(ConflictSerializer(conflict).data)


class FlagView(APIView):
    """A worker reports that items conflict (``{"items": [id, id], "reason": "..."}``)."""

    @extend_schema(request=FlagSerializer, responses={201: ConflictSerializer})
    def post(self, request):
        ser = FlagSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        worker = request_worker(request)
        conflict = actions.do_flag_conflict(
            worker,
            ser.validated_data["items"],
            ser.validated_data["reason"],
            user=None if worker else request.user,
        )
        return Response(ConflictSerializer(conflict).data, status=status.HTTP_201_CREATED)


class RequestResolutionView(APIView):
    """Ask people to decide this conflict now (moves it to the review queue). Workers: only
    on conflicts their items take part in (403), once per ``review_request_interval``
    seconds per conflict (429 + Retry-After); the conflict's ``version`` is not changed."""

    @extend_schema(request=RequestResolutionSerializer, responses={200: ConflictSerializer})
    def post(self, request, pk: int):
        ser = RequestResolutionSerializer(data=request.data or {})
        ser.is_valid(raise_exception=True)
        worker = request_worker(request)
        try:
            conflict = actions.do_request_resolution(
                pk,
                worker=worker,
                user=None if worker else request.user,
                note=ser.validated_data["note"],
            )
        except actions.TooSoon as exc:
            return Response(
                error_body({exc.field: [exc.message]}),
                status=exc.status,
                headers={"Retry-After": str(exc.retry_after)},
            )
        return Response(ConflictSerializer(conflict).data)


class ResolutionStatsView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(resolution_stats(request_worker(request)))
