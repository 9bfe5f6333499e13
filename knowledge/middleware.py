from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from rest_framework.exceptions import Throttled

from config.product import product_settings
from knowledge.api.errors import too_large_response
from knowledge.limits import AddressRateThrottle


class _RefusingMiddleware:
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


class BodySizeLimitMiddleware(_RefusingMiddleware):
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


class AddressThrottleMiddleware(_RefusingMiddleware):
    """Per client address limit on every /api/ request (``throttle_rate_address``), before
    authentication, so requests with a bad token are counted too (knowledge/limits.py)."""

    def __init__(self, get_response):
        super().__init__(get_response)
        self.throttle = AddressRateThrottle()

    def _refuse(self, request):
        if request.path.startswith("/api/"):
            try:
                self.throttle.allow_request(request, None)
            except Throttled as exc:
                response = JsonResponse({"detail": str(exc.detail), "errors": {}}, status=429)
                response["Retry-After"] = str(exc.wait)
                return response
        return None
