"""Guards at the edge of HTTP: URL length, static-file paths, daphne's line limit.

- ``URLLengthLimitMiddleware``: a URL longer than ``KNOWLEDGE_EXCHANGE['max_url_bytes']``
  gets 414 (JSON under /api/) before any view parses it.
- ``SafeStaticFilesHandler``: the embedded static file server answered a path that climbs
  out of the static directories (``/static/../x``) with a 500 (``SuspiciousFileOperation``
  escaped it); here that is a 400 through Django's normal error handling.
- ``patch_daphne_line_limit``: daphne (Twisted) drops the connection when the request line or
  a header line exceeds 16 KB, so a client sees a reset, not an answer. The patch answers
  414 (request line) or 431 (header line) first, then closes (docs/security.md, "Limits").
"""

from __future__ import annotations

import json

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.exceptions import SuspiciousOperation
from django.core.handlers.exception import response_for_exception
from django.http import HttpResponse, JsonResponse

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
