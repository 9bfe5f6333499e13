"""API request latency per minute, shared by every process through the cache.

Each process counts its API request durations into fixed buckets in memory and adds them to
per-minute counters in the cache at most every ``FLUSH_SECONDS`` (one ``incr`` per non-empty
bucket), as ``knowledge/cache.py`` does for its statistics. The alert checker, another
process, reads the last minutes from there: with the Redis cache it sees every server
process; with the embedded in-process cache only its own (so, in practice, nothing).

``window(seconds)`` gives the count and an interpolated quantile over the buckets, the way
Prometheus' ``histogram_quantile`` does.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import Counter
from collections.abc import Sequence

from django.core.cache import cache

#: Upper bounds of the buckets, in milliseconds (the last one is open).
BOUNDS_MS = (
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 2000, 5000, 10000,
)  # fmt: skip
KEY = "kx:apilat:{}:{}"  # minute, bucket index
FLUSH_SECONDS = 2.0
KEEP_SECONDS = 3600

_lock = threading.Lock()
_pending: Counter = Counter()  # (minute, bucket) -> count, not yet in the cache
_last_flush = [0.0]


def _bucket(ms: float) -> int:
    return bisect.bisect_left(BOUNDS_MS, ms)


def record(seconds: float, now: float | None = None) -> None:
    """Count one API request's duration (called by the request-metrics middleware)."""
    now = time.time() if now is None else now
    with _lock:
        _pending[(int(now // 60), _bucket(seconds * 1000))] += 1
    if now - _last_flush[0] >= FLUSH_SECONDS:
        flush(now)


def flush(now: float | None = None) -> None:
    """Add this process's pending counts to the shared counters."""
    now = time.time() if now is None else now
    with _lock:
        todo = dict(_pending)
        _pending.clear()
        _last_flush[0] = now
    for (minute, bucket), n in todo.items():
        key = KEY.format(minute, bucket)
        cache.add(key, 0, KEEP_SECONDS)
        try:
            cache.incr(key, n)
        except ValueError:  # evicted between add and incr
            cache.set(key, n, KEEP_SECONDS)


def window(seconds: float, q: float = 0.95, now: float | None = None) -> tuple[float | None, int]:
    """(the ``q`` quantile in ms, or None without requests; the number of requests) over
    the minutes overlapping the last ``seconds``."""
    now = time.time() if now is None else now
    last = int(now // 60)
    first = int((now - seconds) // 60)
    keys = [KEY.format(m, b) for m in range(first, last + 1) for b in range(len(BOUNDS_MS) + 1)]
    found = cache.get_many(keys)
    counts = [0] * (len(BOUNDS_MS) + 1)
    for m in range(first, last + 1):
        for b in range(len(counts)):
            counts[b] += int(found.get(KEY.format(m, b), 0))
    total = sum(counts)
    if not total:
        return None, 0
    return quantile(q, (*BOUNDS_MS, math.inf), counts), total


def quantile(q: float, uppers: Sequence[float], counts: Sequence[float]) -> float | None:
    """The ``q`` quantile of a histogram: ``counts[i]`` observations at most ``uppers[i]``
    (ascending; the last may be ``inf``), interpolated linearly inside the bucket as
    Prometheus' ``histogram_quantile`` does; in the open last bucket, its lower bound. None
    without observations. (The alert's window and the time series both use it.)"""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen, low = 0.0, 0.0
    for upper, n in zip(uppers, counts, strict=True):
        if n and seen + n >= rank:
            return low if math.isinf(upper) else low + (upper - low) * (rank - seen) / n
        seen += n
        low = upper
    return low


def reset() -> None:
    """Forget this process's pending counts (tests)."""
    with _lock:
        _pending.clear()
        _last_flush[0] = 0.0
