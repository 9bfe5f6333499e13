from __future__ import annotations

from django.core.exceptions import RequestDataTooBig

from config.product import product_settings
from knowledge.api.errors import too_large_response


class BodySizeLimitMiddleware:
    """Answer 413 for API bodies over ``max_body_bytes`` (config/product.py).

    DRF parses JSON from the request stream, bypassing Django's own upload limit, so the
    limit is enforced here before any view runs.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/") and request.method in ("POST", "PUT", "PATCH"):
            limit = product_settings().max_body_bytes
            length = request.META.get("CONTENT_LENGTH")
            try:
                if length and int(length) > limit:
                    return too_large_response(limit)
            except ValueError:
                return too_large_response(limit)
            if not length:
                try:
                    if len(request.body) > limit:
                        return too_large_response(limit)
                except RequestDataTooBig:
                    return too_large_response(limit)
        return self.get_response(request)
