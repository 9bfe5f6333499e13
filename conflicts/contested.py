"""Which items are in an unsettled conflict, and how likely the engine finds their claim.

Read paths (query results, the item detail) add to each item dict ``contested`` (bool),
``conflict_id`` (the unsettled conflict, or None) and ``claim_probability`` (the engine's
current probability that the item's claim is the true one: its claim's score in the
conflict's latest proposal; None when not contested). It is added after the query cache,
so it is always current; one indexed query per page.
"""

from __future__ import annotations

from collections.abc import Iterable

from conflicts.models import Conflict, ConflictItem


def contested_item_ids():
    """Subquery of the ids of items linked to an unsettled conflict (for filters)."""
    return ConflictItem.objects.filter(
        conflict__in=Conflict.objects.unsettled().values("pk")
    ).values("item_id")


def contested_info(item_ids: Iterable[int]) -> dict[int, tuple[int, dict]]:
    """Item id -> (unsettled conflict id, that conflict's claim scores). One query on the
    conflict tables only (a cached query page stays free of item queries)."""
    ids = list(item_ids)
    if not ids:
        return {}
    rows = (
        ConflictItem.objects.filter(item_id__in=ids, conflict__in=Conflict.objects.unsettled())
        .order_by("conflict_id")
        .values_list("item_id", "conflict_id", "conflict__proposal")
    )
    return {
        item_id: (conflict_id, (proposal or {}).get("scores") or {})
        for item_id, conflict_id, proposal in rows
    }


def mark_contested(items: list[dict]) -> list[dict]:
    """``items`` (as_dict shapes) with ``contested``, ``conflict_id``, ``claim_probability``."""
    info = contested_info(i["id"] for i in items)
    out = []
    for item in items:
        conflict_id, scores = info.get(item["id"], (None, {}))
        score = scores.get(item["claim"])
        out.append(
            {
                **item,
                "contested": conflict_id is not None,
                "conflict_id": conflict_id,
                "claim_probability": round(score, 6) if score is not None else None,
            }
        )
    return out
