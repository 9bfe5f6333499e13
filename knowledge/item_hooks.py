"""Let other apps mark items on read paths without the core importing them.

The conflicts app registers ``contested`` marks (items in an unsettled conflict, with the
conflict id and the engine's probability of the item's claim) and the subquery behind the
``contested`` query filter (``conflicts/apps.py``). Without a provider items are unmarked and
no item is contested.
"""

from __future__ import annotations

from collections.abc import Callable

_marks: Callable[..., list[dict]] | None = None
_contested_ids: Callable[[], object] | None = None
_cache_keys: tuple[str, ...] = ()


def register_contested(
    marks: Callable[..., list[dict]], ids: Callable[[], object], cache_keys: tuple[str, ...] = ()
) -> None:
    """``marks(items, cached)``: the fields to add to each item (a dict per item, the same
    keys for every item); ``cached`` is None, or the values of the shared-cache keys
    ``cache_keys`` the marks read (absent: not in the cache), read by the query cache in the
    round trip of its type tokens (so a cached page costs no extra round trip)."""
    global _marks, _contested_ids, _cache_keys
    _marks, _contested_ids, _cache_keys = marks, ids, tuple(cache_keys)


def cache_keys() -> tuple[str, ...]:
    """The shared-cache keys the registered marks read on each page."""
    return _cache_keys


def item_marks(items: list[dict], cached: dict | None = None) -> list[dict] | None:
    """The registered marks of each of ``items``, or None without a provider."""
    return _marks(items, cached) if _marks is not None else None


def mark_items(items: list[dict], cached: dict | None = None) -> list[dict]:
    """``items`` (``KnowledgeItem.as_dict`` shapes) with the registered marks added."""
    marks = item_marks(items, cached)
    if marks is None:
        return items
    return [{**item, **mark} for item, mark in zip(items, marks, strict=True)]


def contested_ids():
    """A subquery of contested item ids, or None without a provider."""
    return _contested_ids() if _contested_ids is not None else None
