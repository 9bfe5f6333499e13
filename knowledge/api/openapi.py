"""OpenAPI: the worker token scheme and the error answers every operation may give.

- ``WorkerTokenScheme`` declares ``Authorization: Token <key>`` for the worker token class,
  so Swagger UI's "Authorize" takes a token and "Try it out" sends it (issue 10, finding 9).
- ``add_error_responses`` (a drf-spectacular postprocessing hook) documents, on every
  operation under /api/, the 4xx answers the API gives in its one error shape
  ``{detail, errors}`` (knowledge/api/errors.py), unless the operation documents its own.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension


def _worker_token_class_path() -> str:
    """The configured worker token class (wherever the app that owns it puts it)."""
    for path in settings.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]:
        if path.endswith(".WorkerTokenAuthentication"):
            return path
    return "identity.authentication.WorkerTokenAuthentication"


WORKER_TOKEN_AUTHENTICATION = _worker_token_class_path()


class WorkerTokenScheme(OpenApiAuthenticationExtension):
    target_class = WORKER_TOKEN_AUTHENTICATION
    name = "workerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                "A worker token, with its prefix: `Token <key>` (create one with "
                "`manage.py create_worker NAME`). In Swagger UI's Authorize dialog, enter "
                "`Token ` followed by the key."
            ),
        }


ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error answer: one line naming the field, and the messages per field.",
    "properties": {
        "detail": {"type": "string"},
        "errors": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
    "required": ["detail", "errors"],
}

# status -> (description, applies to: "all", "input" = takes a body, "auth" = authenticated)
ERROR_RESPONSES = {
    "400": ("Invalid input: the field is named in `errors`.", "all"),
    "401": ("No or bad credentials (a worker token or a session).", "auth"),
    "403": ("Authenticated, but not allowed to do this.", "auth"),
    "404": ("No such object, or not visible to the caller.", "all"),
    "409": ("Changed or in use concurrently: fetch again and retry.", "input"),
    "413": ("The body is larger than the limit.", "input"),
    "414": ("The URL is longer than the limit.", "all"),
    "422": ("An idempotency key reused with a different body.", "input"),
    "429": ("A rate limit was reached: retry after `Retry-After` seconds.", "all"),
    "503": ("The database is unavailable: retry after `Retry-After` seconds.", "all"),
}


def add_error_responses(result, generator, request, public):
    """Postprocessing hook: the error shape as a component, and the error answers on every
    operation under /api/ that does not document them itself."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            takes_input = "requestBody" in operation
            authenticated = bool(operation.get("security")) and {} not in operation["security"]
            responses = operation.setdefault("responses", {})
            for status, (description, applies) in ERROR_RESPONSES.items():
                if status in responses:
                    continue
                if (applies == "input" and not takes_input) or (
                    applies == "auth" and not authenticated
                ):
                    continue
                responses[status] = {
                    "description": description,
                    "content": {"application/json": {"schema": ref}},
                }
    return result
