"""Query-result caching with versioned keys per knowledge type.

Each type has a version number in the cache. A cached query result's key includes the
versions of every type the query can return, so a write to a type (which bumps its
version after commit, before the writer's response is sent) makes every older result
unreachable: no reader sees a result older than its own last write. Old entries simply
expire by TTL.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from knowledge.registry import registry

VERSION_KEY = "kx:v:{}"
RESULT_KEY = "kx:q:{}"

_stats_lock = threading.Lock()
_stats = {"hits": 0, "misses": 0, "invalidations": 0}


def enabled() -> bool:
    return bool(settings.KNOWLEDGE_EXCHANGE["cache_enabled"])


def _versions(types: Iterable[str]) -> list[int]:
    keys = [VERSION_KEY.format(t) for t in types]
    found = cache.get_many(keys)
    return [int(found.get(k, 0)) for k in keys]


def invalidate(types: Iterable[str]) -> None:
    for t in types:
        key = VERSION_KEY.format(t)
        try:
            cache.incr(key)
        except ValueError:  # not there yet (or evicted): any fresh value invalidates
            cache.set(key, 1, timeout=None)
    with _stats_lock:
        _stats["invalidations"] += 1


def invalidate_after_commit(types: Iterable[str]) -> None:
    types = list(types)
    if types:
        transaction.on_commit(lambda: invalidate(types))


def cached_query(params: dict, types: Iterable[str] | None, compute: Callable[[], dict]) -> tuple[dict, bool]:
    """Return (result, hit). ``params`` must fully describe the query (normalised)."""
    if not enabled():
        return compute(), False
    names = sorted(types) if types else registry.names()
    versions = _versions(names)
    digest = hashlib.sha256(
        json.dumps([params, names, versions], sort_keys=True, default=str).encode()
    ).hexdigest()
    key = RESULT_KEY.format(digest)
    result = cache.get(key)
    if result is not None:
        with _stats_lock:
            _stats["hits"] += 1
        return result, True
    with _stats_lock:
        _stats["misses"] += 1
    result = compute()
    cache.set(key, result, timeout=settings.KNOWLEDGE_EXCHANGE["cache_ttl"])
    return result, False


def stats() -> dict:
    with _stats_lock:
        s = dict(_stats)
    total = s["hits"] + s["misses"]
    s["hit_rate"] = round(s["hits"] / total, 4) if total else None
    s["enabled"] = enabled()
    s["backend"] = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    return s
