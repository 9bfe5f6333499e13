"""Which items are in an unsettled conflict, and how likely the engine finds their claim.

Read paths (query results, the item detail) add to each item dict ``contested`` (bool),
``conflict_id`` (the unsettled conflict, or None) and ``claim_probability`` (the engine's
current probability that the item's claim is the true one: its claim's score in the
conflict's latest proposal; None when not contested). It is added after the query cache,
so it is always current: one indexed query per page, and none when no item of the page has a
type with an unsettled conflict (the set of such types is cached for ``TYPES_TTL`` seconds and
forgotten whenever a conflict changes; conflicts are rare beside items, so most pages, cached
hits included, make no database query at all).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable

from django.core.cache import cache
from django.db import connection

from conflicts.choices import UNSETTLED
from conflicts.models import Conflict, ConflictItem


def contested_item_ids():
    """Subquery of the ids of items linked to an unsettled conflict (for filters)."""
    return ConflictItem.objects.filter(
        conflict__in=Conflict.objects.unsettled().values("pk")
    ).values("item_id")


TYPES_KEY = "kx:contested-types"
# Staleness bound when a process misses the invalidation (the embedded local-memory cache is
# per process, so a conflict opened by the workers' process reaches the web process's pages
# within this; with Redis the delete reaches every process at once).
TYPES_TTL = 2


def unsettled_types(cached: dict | None = None) -> frozenset[str]:
    """The knowledge types that have an unsettled conflict (cached, see the module doc;
    ``cached``: the cache entries already read for this page, see ``contested_marks``)."""
    types = cached.get(TYPES_KEY) if cached is not None else cache.get(TYPES_KEY)
    if types is None:
        types = sorted(
            set(Conflict.objects.unsettled().values_list("knowledge_type", flat=True).distinct())
        )
        cache.set(TYPES_KEY, types, TYPES_TTL)
    return frozenset(types)


def forget_unsettled_types() -> None:
    """A conflict changed: the next page recomputes ``unsettled_types``."""
    cache.delete(TYPES_KEY)


def contested_info(item_ids: Iterable[int]) -> dict[int, tuple[int, dict]]:
    """Item id -> (unsettled conflict id, that conflict's claim scores). One query on the
    conflict tables only (a cached query page stays free of item queries).

    It runs on every query page, cache hits included, so it is one prepared SQL statement
    rather than an ORM queryset (building and iterating the queryset cost ~4x the query
    itself: docs/performance.md, "Profiles")."""
    ids = [int(i) for i in item_ids]
    if not ids:
        return {}
    with connection.cursor() as cur:
        cur.execute(_contested_sql(len(ids)), [*ids, *(str(s) for s in UNSETTLED)])
        rows = cur.fetchall()
    out = {}
    for item_id, conflict_id, proposal in rows:
        if isinstance(proposal, str):  # SQLite returns the JSON text
            proposal = json.loads(proposal)
        out[item_id] = (conflict_id, (proposal or {}).get("scores") or {})
    return out


@functools.lru_cache(maxsize=64)
def _contested_sql(n: int) -> str:
    qn = connection.ops.quote_name
    link, conflict = qn(ConflictItem._meta.db_table), qn(Conflict._meta.db_table)
    marks = ", ".join(["%s"] * n)
    states = ", ".join(["%s"] * len(UNSETTLED))
    # ORDER BY conflict id: an item in several unsettled conflicts shows the newest one
    # (the dict keeps the last row per item), as the ORM query did.
    return (
        f"SELECT l.{qn('item_id')}, l.{qn('conflict_id')}, c.{qn('proposal')} "
        f"FROM {link} l JOIN {conflict} c ON c.{qn('id')} = l.{qn('conflict_id')} "
        f"WHERE l.{qn('item_id')} IN ({marks}) AND c.{qn('status')} IN ({states}) "
        f"ORDER BY l.{qn('conflict_id')}"
    )


#: The marks of an item in no unsettled conflict.
UNCONTESTED = {"contested": False, "conflict_id": None, "claim_probability": None}


def contested_marks(items: list[dict], cached: dict | None = None) -> list[dict]:
    """The marks of each of ``items`` (as_dict shapes; only ``id``, ``knowledge_type`` and
    ``claim`` are read): ``contested``, ``conflict_id``, ``claim_probability``, in that
    order (``knowledge.item_hooks.mark_items`` adds them to the items). ``cached``: None, or
    the found values of the cache keys registered with the marks (``TYPES_KEY``), read by
    the query cache with its type tokens (no round trip of its own)."""
    live = unsettled_types(cached) if items else frozenset()
    info = contested_info(i["id"] for i in items if i["knowledge_type"] in live)
    if not info:  # the usual page: one mark, shared (marks are read, never changed)
        return [UNCONTESTED] * len(items)
    out = []
    for item in items:
        conflict_id, scores = info.get(item["id"], (None, {}))
        score = scores.get(item["claim"])
        out.append(
            {
                "contested": conflict_id is not None,
                "conflict_id": conflict_id,
                "claim_probability": round(score, 6) if score is not None else None,
            }
        )
    return out
