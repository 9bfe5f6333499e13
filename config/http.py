"""Guards at the edge of HTTP: URL length, static-file paths, daphne's line limit.

- ``URLLengthLimitMiddleware``: a URL longer than ``KNOWLEDGE_EXCHANGE['max_url_bytes']``
  gets 414 (JSON under /api/) before any view parses it.
- ``SafeStaticFilesHandler``: the embedded static file server answered a path that climbs
  out of the static directories (``/static/../x``) with a 500 (``SuspiciousFileOperation``
  escaped it); here that is a 400 through Django's normal error handling.
- ``patch_daphne_line_limit``: daphne (Twisted) drops the connection when the request line or
  a header line exceeds 16 KB, so a client sees a reset, not an answer. The patch answers
  414 (request line) or 431 (header line) first, then closes (docs/security.md, "Limits").
- ``OneHopASGIHandler``: Django's ASGI handler, with a request for a sync view run through a
  sync middleware chain in ONE hop to a thread, instead of the async chain in which each
  ``MiddlewareMixin`` middleware hops to the thread and back for its ``process_request`` and
  ``process_response`` (14 hops per API request here: 3-4 ms of a 5 ms cached hit on an
  idle machine; docs/performance.md, "One thread hop per request"). Async views (the long
  poll) keep the async chain, so they still wait without holding a thread.
"""

from __future__ import annotations

import functools
import json

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.exceptions import SuspiciousOperation
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import response_for_exception
from django.http import HttpResponse, JsonResponse
from django.urls import Resolver404, get_resolver

from config.product import product_settings


class RefusingMiddleware:
    """A middleware that may answer a request itself (``_refuse``) before the view; sync and
    async-capable, so an async view (the long poll) runs with no thread held."""

    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        refused = self._refuse(request)
        if iscoroutinefunction(self):
            return self._acall(request, refused)
        return refused or self.get_response(request)

    async def _acall(self, request, refused):
        return refused or await self.get_response(request)

    def _refuse(self, request):
        return None


class URLLengthLimitMiddleware(RefusingMiddleware):
    """414 for URLs (path + query string) longer than ``max_url_bytes``."""

    def _refuse(self, request):
        limit = product_settings().max_url_bytes
        size = len(request.META.get("PATH_INFO", "")) + len(request.META.get("QUERY_STRING", ""))
        if size > limit:
            detail = f"the URL is {size} bytes; the limit is {limit}"
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": detail, "errors": {}}, status=414)
            return HttpResponse(detail, status=414, content_type="text/plain")
        return None


class SafeStaticFilesHandler(ASGIStaticFilesHandler):
    """Django's ASGI static handler, with a path outside the static roots answered 400."""

    async def get_response_async(self, request):
        try:
            return await super().get_response_async(request)
        except SuspiciousOperation as exc:
            return await sync_to_async(response_for_exception, thread_sensitive=False)(request, exc)


class OneHopASGIHandler(ASGIHandler):
    """``ASGIHandler`` whose sync views run the sync middleware chain in one thread hop.

    Both chains are built from the same ``settings.MIDDLEWARE`` (each middleware class here
    is sync- and async-capable), so what a request goes through does not depend on the
    chain, only the number of hops does. The choice is made per path by resolving it once
    (cached): a path whose view is a coroutine function takes the async chain.
    """

    def __init__(self):
        super().__init__()  # the async chain, for async views
        self._sync_handler = BaseHandler()
        self._sync_handler.load_middleware(is_async=False)

    async def get_response_async(self, request):
        if view_is_async(request.path_info):
            return await super().get_response_async(request)
        return await sync_to_async(self._sync_handler.get_response, thread_sensitive=True)(request)


@functools.lru_cache(maxsize=4096)
def view_is_async(path_info: str) -> bool:
    """Whether the view of ``path_info`` (under ``ROOT_URLCONF``) is a coroutine function;
    an unknown path is answered by the sync chain (its 404 is a sync response)."""
    try:
        match = get_resolver().resolve(path_info)
    except Resolver404:
        return False
    return iscoroutinefunction(match.func)


def _line_too_long(channel, line) -> None:
    first = getattr(channel, "_HTTPChannel__first_line", True)
    status, what = (
        (b"414 URI Too Long", "request line")
        if first
        else (b"431 Request Header Fields Too Large", "header line")
    )
    body = json.dumps(
        {"detail": f"the {what} is longer than {channel.MAX_LENGTH} bytes", "errors": {}}
    ).encode()
    channel.transport.write(
        b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    # Stop parsing; discard what the client still sends, and close once the answer is out
    # (closing with unread input would reset the connection and lose the answer).
    channel.dataReceived = lambda data: None
    if hasattr(channel.transport, "loseWriteConnection"):
        channel.transport.loseWriteConnection()
        channel.setTimeout(5)  # then drop a client that never closes
    else:
        channel.loseConnection()


def patch_daphne_line_limit() -> None:
    """Answer 414/431 instead of dropping the connection (called by config/asgi.py)."""
    from twisted.web import http

    http.HTTPChannel.lineLengthExceeded = _line_too_long
