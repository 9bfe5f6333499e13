"""One error shape for the whole API.

Every 4xx answers ``{"detail": "<one line naming the field>", "errors": {field: [msg, ...]}}``.
"""

from __future__ import annotations

import sys

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views import defaults
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.product import product_settings
from knowledge.errors import ActionError
from knowledge.outage import is_database_outage, outage_response
from knowledge.query import QueryError


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else "non_field_errors"
            full = f"{prefix}.{name}" if prefix else str(name)
            out.update(_flatten(value, full))
    elif isinstance(detail, list):
        if all(not isinstance(x, (dict, list)) for x in detail):
            out[prefix or "non_field_errors"] = [str(x) for x in detail]
        else:
            for i, value in enumerate(detail):
                out.update(_flatten(value, f"{prefix}[{i}]" if prefix else f"[{i}]"))
    else:
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


def summary(errors: dict[str, list[str]]) -> str:
    parts = [f"{field}: {msgs[0]}" for field, msgs in errors.items() if msgs]
    return "; ".join(parts)[:1000] or "invalid input"


def error_body(errors: dict[str, list[str]]) -> dict:
    return {"detail": summary(errors), "errors": errors}


def exception_handler(exc, context):
    if isinstance(exc, ActionError):
        field = exc.field or "non_field_errors"
        response = Response(error_body({field: [exc.message]}), status=exc.status)
        if exc.status == 503:  # the database could not store it: say when to retry
            response["Retry-After"] = str(product_settings().db_unavailable_retry_after)
        return response
    if isinstance(exc, QueryError):
        return Response(error_body({exc.field: [exc.message]}), status=400)
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": "request body is too large", "errors": {}}, status=413)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ValidationError):
        response.data = error_body(_flatten(exc.detail))
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"]), "errors": {}}
    return response


def too_large_response(limit: int) -> JsonResponse:
    return JsonResponse(
        {"detail": f"request body is larger than {limit} bytes", "errors": {}},
        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    )


# --- Django's error views: the same shape for every status under /api/ -------------------
# DRF answers its own exceptions through ``exception_handler``; what reaches Django instead
# (an unknown path, an uncaught exception, a bad Host header) is answered here. Pages outside
# /api/ keep Django's HTML.


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def _json_error(detail: str, code: int) -> JsonResponse:
    return JsonResponse({"detail": detail, "errors": {}}, status=code)


def bad_request(request, exception=None):
    if _is_api(request):
        return _json_error("bad request", 400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    if _is_api(request):
        return _json_error(
            str(exception) if exception and str(exception) else "permission denied", 403
        )
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception=None):
    if _is_api(request):
        return _json_error(f"no API endpoint at {request.path[:200]!r}", 404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    # A database outage raised outside a view (a middleware, a session save) is a 503 too.
    if is_database_outage(sys.exc_info()[1]):
        return outage_response(request)
    if _is_api(request):
        return _json_error("internal server error (logged; please report it)", 500)
    return defaults.server_error(request)
