"""``GET /api/knowledge/``: the API root, a browsable list of the endpoints (DRF).

Only URL names are reversed here: the composition root knows every app's routes without
importing their code. The OpenAPI schema (``/api/schema/``) stays the contract; this page is
the way in for a person with a browser.
"""

from __future__ import annotations

from django.urls import NoReverseMatch, reverse
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

# (section, URL name, placeholder kwargs, methods, what it does)
ENDPOINTS = [
    ("knowledge", "broadcast", {}, "POST", "broadcast one knowledge item"),
    ("knowledge", "broadcast-bulk", {}, "POST", "broadcast up to a batch of items"),
    ("knowledge", "query", {}, "GET", "query active knowledge (type, freshness, urgency...)"),
    ("knowledge", "item", {"pk": 0}, "GET", "one item"),
    ("knowledge", "types", {}, "GET", "the registered knowledge types"),
    ("knowledge", "receive", {"worker": "NAME"}, "GET", "a worker's inbox"),
    ("knowledge", "ack", {"worker": "NAME"}, "POST", "consume a worker's inbox up to a seq"),
    ("knowledge", "validate", {}, "POST", "validate or dispute an item"),
    ("knowledge", "subscribe", {}, "POST", "subscribe to types"),
    ("knowledge", "unsubscribe", {}, "POST", "unsubscribe from types"),
    ("knowledge", "state", {"worker": "NAME"}, "GET, PUT", "a worker's state document"),
    ("knowledge", "events", {}, "GET", "the event log (long poll)"),
    ("knowledge", "stats", {}, "GET", "exchange statistics"),
    ("knowledge", "health", {}, "GET", "health checks (no auth)"),
    ("conflicts", "conflict-list", {}, "GET", "conflicts, filtered"),
    ("conflicts", "conflict-detail", {"pk": 0}, "GET", "one conflict with its evidence"),
    ("conflicts", "conflict-flag", {}, "POST", "flag items as contradicting"),
    ("conflicts", "resolve", {}, "POST", "decide a conflict"),
    ("conflicts", "resolution-stats", {}, "GET", "resolution statistics"),
    ("monitoring", "timeseries", {}, "GET", "per-minute time series (broadcasts, latency...)"),
    ("monitoring", "flow", {}, "GET", "who broadcast which types to whom, for a window"),
    ("workers", "worker-list", {}, "GET", "workers"),
    ("workers", "worker-me", {}, "GET", "the calling worker"),
    ("documentation", "schema", {}, "GET", "OpenAPI schema"),
    ("documentation", "swagger-ui", {}, "GET", "interactive API documentation"),
]
ALIASES = {"resolve": "conflict-resolve"}  # URL names that differ from the label


def _path(name: str, kwargs: dict) -> str | None:
    try:
        path = reverse(ALIASES.get(name, name), kwargs=kwargs or None)
    except NoReverseMatch:
        return None
    for key, value in kwargs.items():  # show placeholders, not the sample values
        path = path.replace(f"/{value}", f"/{{{key}}}", 1)
    return path


class ApiRootView(APIView):
    """The endpoints of the Knowledge Exchange API. Workers authenticate with
    ``Authorization: Token <token>``; staff with their session."""

    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(exclude=True)
    def get(self, request):
        sections: dict[str, list] = {}
        for section, name, kwargs, methods, doc in ENDPOINTS:
            path = _path(name, kwargs)
            if path is None:
                continue
            entry = {"methods": methods, "description": doc}
            entry["url"] = request.build_absolute_uri(path) if not kwargs else path
            sections.setdefault(section, []).append({"name": name, **entry})
        return Response(
            {"endpoints": sections, "schema": request.build_absolute_uri(reverse("schema"))}
        )
