"""The Redis cache backend: django-redis's, with its client built once per process.

Under ASGI, Django's ``caches`` are context-local, so every request builds its own cache
backend, and django-redis builds a ``Redis`` client for each backend (response-callback
tables and all: ~75 µs, 5-10 % of a cached hit; docs/performance.md, "One thread hop per
request"). The connection pools behind them were already process-wide (django-redis's
``ConnectionFactory._pools``); here the client over them is too, one per configuration, so a
changed ``CACHES`` (a test's ``override_settings``) gets its own.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from django_redis.cache import RedisCache


class ProcessRedisCache(RedisCache):
    _shared: ClassVar[dict[str, Any]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @property
    def client(self):
        if self._client is None:
            key = repr((self._server, self._params))
            with self._lock:
                shared = self._shared.get(key)
                if shared is None:
                    shared = self._shared[key] = self._client_cls(self._server, self._params, self)
            self._client = shared
        return self._client
