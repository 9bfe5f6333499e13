"""The lean path of ``GET query``: a worker's query answered without DRF's per-request machinery.

A cached query hit costs about a millisecond of work that matters (its Redis round trips, the
page, rendering); DRF's per-request machinery (the ``Request`` wrapper, content negotiation,
the authenticator, permission and throttle instances, ``Response`` and ``finalize_response``)
was a large share of the rest (docs/performance.md, "The lean query path"). The query view
(``QueryView.dispatch``) first asks ``answer``; it answers only the plain case and leaves every
other request to DRF's path unchanged:

- ``GET`` with a worker token whose cache entry ``count_request`` (knowledge/limits.py) brought
  in the request's first round trip, asking for plain JSON (no ``Accept``, ``*/*`` or
  ``application/json``; no ``format``);
- a valid query (parsed once, in that first round trip, so its type tokens and its page
  slot, named by the token's hash and the query string, are read there too: a hit is one
  Redis round trip; ``knowledge.cache.cached_query_reading`` says when a slot's page counts);
- the view's permission classes and throttles allow it, judged by their own code
  (``within_limits`` peeks at the counts without using them up, so a refusal is answered by
  DRF's path from the same counts: the same 401, 403, 429 and 400 bodies and headers).

It runs the same ``cached_page`` as DRF's path (visibility, read scope and the cache key stay
in one place); a hit is answered with the cached bytes joined with the current freshness and
marks (``Page.as_bytes``), anything else rendered by the same renderer; the headers DRF adds
(``Allow``, ``Vary: Accept``) are added here; the middlewares add the rest for both paths. ``knowledge/tests/test_lean_query.py``
compares the two paths' answers byte for byte.
"""

from __future__ import annotations

import dataclasses
import functools

from django.http import HttpResponse, QueryDict
from django.utils.cache import patch_vary_headers

from identity.authentication import PREFETCHED_TOKEN, WorkerPrincipal, authenticated_worker
from identity.models import hash_token
from knowledge import cache as knowledge_cache
from knowledge.api import presenters
from knowledge.api.renderers import ORJSONRenderer, js_safe
from knowledge.cache import slot_key
from knowledge.errors import ActionError
from knowledge.limits import PREFETCHED_VALUES, request_token, within_limits
from knowledge.query import KnowledgeQuery, QueryError, cache_keys_read, cached_page
from knowledge.registry import registry

#: Query parameters that may be repeated (``?types=a&types=b``); the others keep the last value.
LIST_PARAMS = frozenset({"types", "sources", "urgency", "status", "validation_status"})
#: ``Accept`` values for which DRF's negotiation picks the JSON renderer without options.
PLAIN_JSON = frozenset({"", "*/*", "application/json"})
_PARSED = "_kx_query"
_SLOT = "_kx_slot"
_renderer = ORJSONRenderer()


def query_data(params) -> dict:
    """The filters of a query string (a ``QueryDict``), as ``presenters.parse_query`` takes
    them."""
    data = {}
    for key in params:
        values = params.getlist(key)
        data[key] = values if key in LIST_PARAMS else values[-1]
    return data


def parsed_query(request) -> KnowledgeQuery | None:
    """The query of a ``GET`` request, parsed once per request; None when it is not valid
    (DRF's path then answers the error, in the view, as before)."""
    if not hasattr(request, _PARSED):
        query = _parse(request.META.get("QUERY_STRING", ""), registry.version)
        setattr(request, _PARSED, dataclasses.replace(query) if query is not None else None)
    return getattr(request, _PARSED)


@functools.lru_cache(maxsize=1024)
def _parse(query_string: str, registry_version: int) -> KnowledgeQuery | None:
    """A query string's query, validated once per process (DRF's validation was ~10 % of a
    cached hit; workers repeat their queries). Validation depends only on the string and the
    registry of types (hence its version in the key); the caller gets a copy."""
    try:
        return presenters.parse_query(query_data(QueryDict(query_string)))
    except Exception:  # noqa: BLE001 - whatever it is, DRF's path raises it again
        return None


def page_slot(request) -> str | None:
    """The page slot (``knowledge.cache.slot_key``) of a worker's ``GET query`` (lean or DRF's
    path): named by the token's hash and the query string, both known before authentication,
    so the request's first round trip reads the page too; None without a token or for a
    ``POST``. What is in it counts only for the viewer and read scope it was computed for
    (``knowledge.cache.cached_query_reading``)."""
    if not hasattr(request, _SLOT):  # asked twice per request: the prefetch, the answer
        token = request_token(request) if request.method == "GET" else None
        slot = None
        if token is not None:
            slot = slot_key(hash_token(token), request.META.get("QUERY_STRING", ""))
        setattr(request, _SLOT, slot)
    return getattr(request, _SLOT)


@functools.lru_cache(maxsize=1024)
def _asks_format(query_string: str) -> bool:
    """Whether a query string names DRF's ``format`` (parsing ``request.GET`` per request was
    ~5 % of a hit)."""
    return "format" in QueryDict(query_string)


def prefetch_keys(request) -> list[str]:
    """The cache keys a ``GET query`` reads before its page, and its page slot, for
    ``count_request`` to read in the request's first round trip."""
    if request.method != "GET":
        return []
    query = parsed_query(request)
    if query is None:
        return []
    slot = page_slot(request) if knowledge_cache.enabled() else None
    return [*cache_keys_read(query), *([slot] if slot is not None else [])]


def answer(view, request) -> HttpResponse | None:
    """The answer to ``request`` without DRF, or None to leave it to DRF (see the module doc)."""
    if (
        request.method != "GET"
        or request.META.get("HTTP_ACCEPT", "") not in PLAIN_JSON
        or _asks_format(request.META.get("QUERY_STRING", ""))
    ):
        return None
    entry = getattr(request, PREFETCHED_TOKEN, None)
    if entry is None or entry[1] is None:  # no token, or not in the token cache
        return None
    query = parsed_query(request)
    if query is None:
        return None
    worker = authenticated_worker(request_token(request), entry)
    if worker is None:
        return None
    request.user, request.auth = WorkerPrincipal(worker), worker  # as DRF sets them
    if not all(p().has_permission(request, view) for p in view.permission_classes):
        return None
    if not within_limits(request, view):
        return None
    try:
        page = cached_page(
            query, worker, getattr(request, PREFETCHED_VALUES, None), page_slot(request)
        )
    except (QueryError, ActionError):  # a forged cursor: DRF's path answers the 400
        return None
    body = page.as_bytes()  # a hit: the cached bytes with the current freshness and marks
    if body is None:
        body = _renderer.render({**page.as_dict(), "cached": page.hit})
    response = HttpResponse(js_safe(body), "application/json")
    response["Allow"] = ", ".join(view.allowed_methods)
    patch_vary_headers(response, ["Accept"])
    return response
