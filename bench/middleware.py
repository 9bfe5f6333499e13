from __future__ import annotations

import time

from django.db import connection


class ServerTimingMiddleware:
    """``X-Server-Ms`` (time inside Django) and ``X-DB-Queries`` on every response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        count = [0]

        def counter(execute, sql, params, many, context):
            count[0] += 1
            return execute(sql, params, many, context)

        start = time.perf_counter()
        with connection.execute_wrapper(counter):
            response = self.get_response(request)
        response["X-Server-Ms"] = f"{(time.perf_counter() - start) * 1000:.3f}"
        response["X-DB-Queries"] = str(count[0])
        return response
