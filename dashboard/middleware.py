from __future__ import annotations

import time

from dashboard.metrics import REQUEST_LATENCY


class RequestMetricsMiddleware:
    """Time every API request by its route pattern (not its raw path: bounded labels)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        start = time.perf_counter()
        response = self.get_response(request)
        if request.path.startswith("/api/"):
            match = getattr(request, "resolver_match", None)
            route = match.route if match else "unmatched"
            REQUEST_LATENCY.labels(route, request.method, str(response.status_code)).observe(
                time.perf_counter() - start
            )
        return response
