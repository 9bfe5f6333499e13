"""Let other apps mark items on read paths without the core importing them.

The conflicts app registers ``contested`` marks (items in an unsettled conflict, with the
conflict id and the engine's probability of the item's claim) and the subquery behind the
``contested`` query filter (``conflicts/apps.py``). Without a provider items are unmarked and
no item is contested.
"""

from __future__ import annotations

from collections.abc import Callable

_mark: Callable[..., list[dict]] | None = None
_contested_ids: Callable[[], object] | None = None
_cache_keys: tuple[str, ...] = ()


def register_contested(
    mark: Callable[..., list[dict]], ids: Callable[[], object], cache_keys: tuple[str, ...] = ()
) -> None:
    """``mark(items, cached)``: ``cached`` is None, or the values of the shared-cache keys
    ``cache_keys`` the marks read (absent: not in the cache), read by the query cache in
    the round trip of its type tokens (so a cached page costs no extra round trip)."""
    global _mark, _contested_ids, _cache_keys
    _mark, _contested_ids, _cache_keys = mark, ids, tuple(cache_keys)


def cache_keys() -> tuple[str, ...]:
    """The shared-cache keys the registered marks read on each page."""
    return _cache_keys


def mark_items(items: list[dict], cached: dict | None = None) -> list[dict]:
    """``items`` (``KnowledgeItem.as_dict`` shapes) with the registered marks added."""
    return _mark(items, cached) if _mark is not None else items


def contested_ids():
    """A subquery of contested item ids, or None without a provider."""
    return _contested_ids() if _contested_ids is not None else None
