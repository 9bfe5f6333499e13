from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from rest_framework.exceptions import Throttled

from config.http import RefusingMiddleware
from config.product import product_settings
from knowledge.api.errors import too_large_response
from knowledge.limits import AddressRateThrottle, count_request


class BodySizeLimitMiddleware(RefusingMiddleware):
    """Answer 413 for API bodies over ``max_body_bytes`` (config/product.py).

    DRF parses JSON from the request stream, bypassing Django's own upload limit, so the
    limit is enforced here before any view runs.
    """

    def _refuse(self, request):
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
        return None


class AddressThrottleMiddleware(RefusingMiddleware):
    """Per client address limit on every /api/ request (``throttle_rate_address``), before
    authentication, so requests with a bad token are counted too (knowledge/limits.py).
    Counts the request's per-token counters and reads its token entry in the same round
    trip (``count_request``)."""

    def __init__(self, get_response):
        super().__init__(get_response)
        self.throttle = AddressRateThrottle()

    def _refuse(self, request):
        if request.path.startswith("/api/"):
            count_request(request)
            try:
                self.throttle.allow_request(request, None)
            except Throttled as exc:
                response = JsonResponse({"detail": str(exc.detail), "errors": {}}, status=429)
                response["Retry-After"] = str(exc.wait)
                return response
        return None
