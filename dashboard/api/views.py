"""The time-series and knowledge-flow API (docs/monitoring.md, "Time series").

Staff (session) see every rollup; a worker token sees the rollups of public events of the
types its read scope allows (docs/security.md): the same rule as ``GET stats``."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from dashboard import timeseries
from identity.permissions import request_worker

WINDOW = OpenApiParameter(
    "window", OpenApiTypes.STR, description="15m, 6h, 2d... (default 60m; at most the retention)"
)


class TimeSeriesView(APIView):
    """Per-minute series: ``broadcasts``, ``receptions`` (by ``type`` or ``worker`` with
    ``by``), ``conflicts`` (opened / auto_resolved / decided), ``api_requests``,
    ``api_latency`` (p50 / p95 / p99 ms), ``live_connections``, ``freshness`` (by type)."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "series",
                OpenApiTypes.STR,
                description="comma-separated: " + ", ".join(timeseries.API_SERIES),
            ),
            WINDOW,
            OpenApiParameter("by", OpenApiTypes.STR, enum=["type", "worker"]),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        names = timeseries.parse_series(request.query_params.get("series"))
        window = timeseries.parse_window(request.query_params.get("window"))
        by = timeseries.parse_by(request.query_params.get("by"))
        return Response(timeseries.series_data(names, window, by, viewer=request_worker(request)))


class FlowView(APIView):
    """Knowledge flow over a window: who broadcast which types, who received them."""

    @extend_schema(parameters=[WINDOW], responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        window = timeseries.parse_window(request.query_params.get("window"))
        return Response(timeseries.flow_data(window, viewer=request_worker(request)))
