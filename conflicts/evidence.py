"""What a reviewer needs to see of a conflict: each item's claim, confidence, freshness and
the trust of its source, side by side (API detail, dashboard page and admin alike)."""

from __future__ import annotations

from django.utils import timezone

from conflicts.actions import trusts_for
from conflicts.models import Conflict
from identity.models import Worker
from knowledge.models import KnowledgeItem


def conflict_evidence(conflict: Conflict, viewer: Worker | None = None) -> list[dict]:
    """One row per item of the conflict (best claim first when decided), with effective trust.

    ``viewer`` (a worker) sees only items visible to it (targeted items of others are left out).
    """
    now = timezone.now()
    links = list(conflict.links.select_related("item__source").order_by("id"))
    if viewer is not None:
        visible = set(
            KnowledgeItem.objects.visible_to(viewer)
            .filter(pk__in=[link.item_id for link in links])
            .values_list("pk", flat=True)
        )
        links = [link for link in links if link.item_id in visible]
    trusts = trusts_for(
        {link.item.source_id: link.item.source for link in links}.values(), conflict.knowledge_type
    )
    rows = []
    for link in links:
        item = link.item
        rows.append(
            {
                "role": link.role,
                "won": link.won,
                "trust": round(trusts[item.source_id].mean, 4),
                "trust_pinned": trusts[item.source_id].pinned is not None,
                "freshness": round(item.freshness(now), 4),
                "item": item.as_dict(now),
            }
        )
    rows.sort(key=lambda r: (r["won"] is not True, r["item"]["claim"], r["item"]["id"]))
    return rows
