"""Query-result caching with per-type generation tokens.

Every knowledge type has a *generation token* in the cache: a random value, never reused.
A cached query result's key hashes the normalised query with the tokens of every type the
query can return. A write to a type replaces that type's token after commit, before the
writer's response is sent, so every older result of that type becomes unreachable: no
reader sees a result older than its own last write, and results of other types stay hot.
Old entries are never deleted, they expire by TTL (``cache_ttl``).

Why tokens rather than counters: a counter that is evicted (LocMem culls, Redis may be
restarted or flushed) restarts at 0 and makes results cached under 0 reachable again;
a missing token is replaced by a fresh random one, so eviction only costs misses.

Statistics (hits, misses, invalidations) are counted per process and added to shared
counters in the cache backend at most every ``STATS_FLUSH_SECONDS`` (one ``incr`` per
counter), so ``GET stats`` and ``/metrics`` show the totals of every process sharing the
Redis cache (a second or so behind), without a Redis write per request.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable

import orjson
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from config.product import product_settings
from knowledge import redis_writes
from knowledge.registry import registry

TOKEN_KEY = "kx:gen:{}"
RESULT_KEY = "kx:q:{}"
SLOT_KEY = "kx:qs:{}"
STATS_KEY = "kx:stats:{}"
STATS_NAMES = ("hits", "misses", "invalidations")
STATS_FLUSH_SECONDS = 1.0

_stats_lock = threading.Lock()
_local: Counter = Counter()  # this process, since start
_pending: Counter = Counter()  # this process, not yet added to the shared counters
_last_flush = [0.0]


def enabled() -> bool:
    return product_settings().cache_enabled


def ttl() -> int:
    return product_settings().cache_ttl


def _new_token() -> str:
    return secrets.token_hex(8)


def token_keys(types: Iterable[str] | None) -> list[str]:
    """The cache keys of the generation tokens a query of ``types`` (None or empty: every
    type) is keyed on, in the order its result key hashes them."""
    return [TOKEN_KEY.format(t) for t in (sorted(types) if types else registry.names())]


def read_ahead(keys: Iterable[str], prefetched: dict | None) -> dict | None:
    """The values of ``keys`` (those found) when ``prefetched`` (key -> value or None, read
    by the request's first round trip: knowledge/limits.py ``count_request``) holds them all;
    else None, and the caller reads them."""
    keys = list(keys)
    if prefetched is None or not all(k in prefetched for k in keys):
        return None
    return {k: prefetched[k] for k in keys if prefetched[k] is not None}


def _tokens(
    types: list[str], also_read: Iterable[str] = (), prefetched: dict | None = None
) -> tuple[list[str], dict]:
    """The types' tokens, and the values of the keys ``also_read`` (those found), read in the
    same round trip; none when ``prefetched`` (key -> value or None, read by the request's
    first round trip: knowledge/limits.py ``count_request``) holds them all."""
    keys = [TOKEN_KEY.format(t) for t in types]
    extra = [k for k in also_read if k not in keys]
    found = read_ahead(keys + extra, prefetched)
    if found is None:
        found = cache.get_many(keys + extra)
    others = {k: found.pop(k) for k in extra if k in found}
    for key in keys:
        if key not in found:
            # First use, evicted, or cache restarted: a fresh token (never an old one).
            token = _new_token()
            if not cache.add(key, token, timeout=None):
                token = cache.get(key) or token
            found[key] = token
    return [found[k] for k in keys], others


def invalidate(types: Iterable[str]) -> None:
    """Make every cached result that may contain items of ``types`` unreachable."""
    types = list(types)
    if not types:
        return
    # With the commit's wake-up PUBLISH in one round trip inside ``redis_writes.together()``.
    redis_writes.set_cache({TOKEN_KEY.format(t): _new_token() for t in types})
    _count("invalidations")


def invalidate_after_commit(types: Iterable[str]) -> None:
    """Call from actions inside their transaction: invalidates once the write is visible."""
    types = list(types)
    if types:
        transaction.on_commit(lambda: invalidate(types))


def result_key(params: dict, types: Iterable[str] | None) -> str:
    return _result_key(params, types)[0]


def _result_key(
    params: dict,
    types: Iterable[str] | None,
    also_read: Iterable[str] = (),
    prefetched: dict | None = None,
):
    names = sorted(types) if types else registry.names()
    tokens, others = _tokens(names, also_read, prefetched)
    digest = hashlib.sha256(
        orjson.dumps([params, names, tokens], default=str, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()
    return RESULT_KEY.format(digest), others


def cached_query(
    params: dict,
    types: Iterable[str] | None,
    compute: Callable[[], dict],
    still_valid: Callable[[dict], bool] | None = None,
) -> tuple[dict, bool]:
    """Return (result, hit). ``params`` must fully describe the query (normalised).
    A cached result that ``still_valid`` rejects counts as a miss and is replaced."""
    result, hit, _ = cached_query_reading(params, types, compute, still_valid)
    return result, hit


def slot_key(*parts: str) -> str:
    """The key of a *page slot*: a place for a result named by what the request carries
    before it is authenticated (a token's hash and its query string), so the request's first
    round trip can read it (see ``cached_query_reading``)."""
    return SLOT_KEY.format(hashlib.sha256("\0".join(parts).encode()).hexdigest())


def cached_query_reading(
    params: dict,
    types: Iterable[str] | None,
    compute: Callable[[], dict],
    still_valid: Callable[[dict], bool] | None = None,
    also_read: Iterable[str] = (),
    prefetched: dict | None = None,
    slot: str | None = None,
) -> tuple[dict, bool, dict | None]:
    """``cached_query``, also reading the cache keys ``also_read`` in the round trip of the
    type tokens: (result, hit, {key: value} of those found; with the cache off, those the
    request read ahead, or None).
    ``prefetched``: see ``_tokens``.

    ``slot``: a page slot (``slot_key``) to keep the result in as ``(result key, result)``.
    A request that read its slot in its first round trip (in ``prefetched``, with the type
    tokens) has its hit with no second trip: the slot's result counts only when the result
    key it was stored under is the one the current tokens and ``params`` give, so a write to
    a type, a changed viewer or read scope makes it a miss exactly as for the result key. On
    a slot miss the result key is read as before (``warm_cache`` fills those), and a hit
    there is copied into the slot; a computed result is kept in the slot only."""
    if not enabled():
        return compute(), False, read_ahead(also_read, prefetched)
    key, others = _result_key(params, types, also_read, prefetched)
    result = None
    if slot is not None:
        stored = (
            prefetched[slot] if prefetched is not None and slot in prefetched else cache.get(slot)
        )
        if isinstance(stored, tuple) and len(stored) == 2 and stored[0] == key:
            result = stored[1]
    from_slot = result is not None
    if result is None:
        result = cache.get(key)
    if result is not None and (still_valid is None or still_valid(result)):
        _count("hits")
        if slot is not None and not from_slot:
            cache.set(slot, (key, result), timeout=ttl())
        return result, True, others
    _count("misses")
    result = compute()
    if slot is None:
        cache.set(key, result, timeout=ttl())
    else:
        cache.set(slot, (key, result), timeout=ttl())
    return result, False, others


# --- Statistics ----------------------------------------------------------------------------


def _count(name: str, n: int = 1) -> None:
    with _stats_lock:
        _local[name] += n
        _pending[name] += n
        due = time.monotonic() - _last_flush[0] >= STATS_FLUSH_SECONDS
    if due:
        flush_stats()


def flush_stats() -> None:
    """Add this process's pending counts to the shared counters in the cache backend."""
    with _stats_lock:
        pending = dict(_pending)
        _pending.clear()
        _last_flush[0] = time.monotonic()
    for name, n in pending.items():
        if not n:
            continue
        key = STATS_KEY.format(name)
        try:
            cache.incr(key, n)
        except ValueError:  # not there yet (or evicted)
            if not cache.add(key, n, timeout=None):
                cache.incr(key, n)


def stats() -> dict:
    """Hit/miss/invalidation totals shared by every process using this cache backend, and
    this process's own counts under ``process``."""
    flush_stats()
    shared = cache.get_many([STATS_KEY.format(n) for n in STATS_NAMES])
    s: dict = {n: int(shared.get(STATS_KEY.format(n), 0)) for n in STATS_NAMES}
    with _stats_lock:
        s["process"] = {n: _local[n] for n in STATS_NAMES}
    total = s["hits"] + s["misses"]
    s["hit_rate"] = round(s["hits"] / total, 4) if total else None
    s["enabled"] = enabled()
    s["ttl_seconds"] = ttl()
    s["backend"] = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    s["shared"] = "Redis" in s["backend"]
    return s
