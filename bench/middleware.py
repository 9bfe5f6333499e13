from __future__ import annotations

import time

from django.db import connection


class ServerTimingMiddleware:
    """``X-Server-Ms`` (time inside Django), ``X-DB-Queries`` and ``X-DB-Ms`` (time waiting
    for the database) on every response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        count = [0, 0.0]

        def counter(execute, sql, params, many, context):
            count[0] += 1
            t = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                count[1] += time.perf_counter() - t

        start = time.perf_counter()
        with connection.execute_wrapper(counter):
            response = self.get_response(request)
        response["X-Server-Ms"] = f"{(time.perf_counter() - start) * 1000:.3f}"
        response["X-DB-Queries"] = str(count[0])
        response["X-DB-Ms"] = f"{count[1] * 1000:.3f}"
        return response
