from __future__ import annotations

import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from dashboard import latency
from dashboard.metrics import REQUEST_LATENCY

# Not counted for the latency alert: long polls wait on purpose; the schema and its viewer
# are documentation (generating the schema takes ~300 ms once per process).
UNTIMED_ROUTES = {"api/knowledge/events", "api/schema/", "api/docs/"}


class RequestMetricsMiddleware:
    """Time every API request by its route pattern (not its raw path: bounded labels)."""

    async_capable = True  # so an async view (the long poll) runs without a thread held

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        start = time.perf_counter()
        return self._observe(request, self.get_response(request), start)

    async def _acall(self, request):
        start = time.perf_counter()
        return self._observe(request, await self.get_response(request), start)

    def _observe(self, request, response, start):
        if request.path.startswith("/api/"):
            match = getattr(request, "resolver_match", None)
            route = match.route if match else "unmatched"
            elapsed = time.perf_counter() - start
            REQUEST_LATENCY.labels(route, request.method, str(response.status_code)).observe(
                elapsed
            )
            if route not in UNTIMED_ROUTES:
                latency.record(elapsed)  # for the latency alert, across processes
        return response
