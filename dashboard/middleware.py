from __future__ import annotations

import threading
import time
from collections import deque

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from dashboard.metrics import REQUEST_LATENCY

# The last API request durations of this process, for the latency alert (a window the
# cumulative Prometheus histogram cannot give).
_recent: deque[tuple[float, float]] = deque(maxlen=5000)
_recent_lock = threading.Lock()


def recent_api_p95(window_seconds: float) -> tuple[float, int]:
    """(P95 in seconds, count) of this process's API requests in the last window."""
    cutoff = time.monotonic() - window_seconds
    with _recent_lock:
        values = sorted(d for t, d in _recent if t >= cutoff)
    if not values:
        return 0.0, 0
    return values[min(len(values) - 1, int(0.95 * len(values)))], len(values)


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
            if route != "api/knowledge/events":  # long polls wait on purpose
                with _recent_lock:
                    _recent.append((time.monotonic(), elapsed))
        return response
