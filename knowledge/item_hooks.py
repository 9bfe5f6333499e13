"""Let other apps mark items on read paths without the core importing them.

The conflicts app registers ``contested`` marks (items in an unsettled conflict, with the
conflict id and the engine's probability of the item's claim) and the subquery behind the
``contested`` query filter (``conflicts/apps.py``). Without a provider items are unmarked and
no item is contested.
"""

from __future__ import annotations

from collections.abc import Callable

_mark: Callable[[list[dict]], list[dict]] | None = None
_contested_ids: Callable[[], object] | None = None


def register_contested(mark: Callable[[list[dict]], list[dict]], ids: Callable[[], object]) -> None:
    global _mark, _contested_ids
    _mark, _contested_ids = mark, ids


def mark_items(items: list[dict]) -> list[dict]:
    """``items`` (``KnowledgeItem.as_dict`` shapes) with the registered marks added."""
    return _mark(items) if _mark is not None else items


def contested_ids():
    """A subquery of contested item ids, or None without a provider."""
    return _contested_ids() if _contested_ids is not None else None
