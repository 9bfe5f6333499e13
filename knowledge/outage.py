"""Database outages as clients see them: ``503`` + ``Retry-After`` in the JSON error shape.

A request that cannot reach the database (connection refused or lost, no pooled connection
within ``DB_POOL_TIMEOUT``) answers at once with 503 instead of an HTML 500 or a hang: this
middleware for what views raise, ``knowledge.api.errors.server_error`` (handler500) for what is
raised outside them. Nothing here keeps state: when the database is back the pool reconnects
and the next request works.
"""

from __future__ import annotations

import logging

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse

from config.product import product_settings

log = logging.getLogger(__name__)

try:  # the driver's own errors, raised by code that talks to the pool directly
    from psycopg import OperationalError as _DriverOperationalError
except ImportError:  # pragma: no cover - psycopg is a dependency
    _DriverOperationalError = OperationalError

OUTAGE_ERRORS = (OperationalError, InterfaceError, _DriverOperationalError)
DETAIL = "the database is unavailable; retry later"


def is_database_outage(exc: BaseException | None) -> bool:
    return isinstance(exc, OUTAGE_ERRORS)


def outage_response(request) -> HttpResponse:
    retry_after = str(product_settings().db_unavailable_retry_after)
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": DETAIL, "errors": {}}, status=503)
    else:
        response = HttpResponse(DETAIL + "\n", status=503, content_type="text/plain")
    response["Retry-After"] = retry_after
    response["Cache-Control"] = "no-store"
    return response


class DatabaseOutageMiddleware:
    """Turn a database outage raised by a view (DRF re-raises what its handler leaves) into 503."""

    async_capable = True  # so an async view (the long poll) runs without a thread held

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)  # __call__ then returns get_response's coroutine

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if is_database_outage(exception):
            log.warning(
                "database unavailable: %s %s: %s",
                request.method,
                request.path,
                type(exception).__name__,
            )
            return outage_response(request)
        return None
