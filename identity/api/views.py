from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from identity.models import Worker
from identity.permissions import request_worker


def worker_dict(w: Worker) -> dict:
    return {
        "name": w.name,
        "kind": w.kind,
        "description": w.description,
        "is_active": w.is_active,
        "trust_pin": w.trust_pin,
        "broadcast_count": w.broadcast_count,
        "received_count": w.received_count,
        "last_seen_at": w.last_seen_at.isoformat() if w.last_seen_at else None,
    }


class WorkerListView(APIView):
    """Every worker identity (names, kinds, counters; never tokens). A worker gets the
    counters of itself only: another's ``broadcast_count`` would count its private items
    (docs/security.md, "Visibility")."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        me = request_worker(request)
        rows = []
        for w in Worker.objects.all():
            row = worker_dict(w)
            if me is not None and w.pk != me.pk:
                row["broadcast_count"] = row["received_count"] = None
            rows.append(row)
        return Response({"results": rows, "next": None})


class MeView(APIView):
    """The worker behind the token (404 for people)."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        me = request_worker(request)
        if me is None:
            return Response({"detail": "not a worker token", "errors": {}}, status=404)
        return Response(worker_dict(me))
