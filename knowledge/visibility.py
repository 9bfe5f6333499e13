"""Who may see what: the one visibility rule (docs/security.md, "Visibility").

An item's *audience* is who may see it: ``None`` for an untargeted item (every worker), else
the set of its source and its targets. People (staff sessions) see everything.

- Items: ``KnowledgeItem.objects.visible_to(worker)`` (the SQL form of the same rule,
  ``knowledge.models.visible_item_q``).
- Anything made of several items (a conflict, its proposal, evidence, history, statistics,
  events) is visible to a worker only if *every* item of it is: its audience is the
  intersection of its items' audiences (``audience_of``). A worker that may not see one of
  the items does not see the whole thing at all, not even that it exists.
- Events carry the audience they were published for (``event_visibility``); the live feed,
  ``GET events`` and inboxes filter with ``Event.visible_to``.
"""

from __future__ import annotations

from collections.abc import Iterable

from knowledge.models import KnowledgeItem

#: ``None``: every worker; otherwise the names of the workers who may see it.
Audience = frozenset[str] | None


def item_audience(item: KnowledgeItem) -> Audience:
    """Who may see ``item`` (``source`` must be loaded)."""
    if not item.is_targeted:
        return None
    return frozenset({item.source.name, *item.target_names})


def audience_from_rows(rows: Iterable[tuple[bool, str, list]]) -> Audience:
    """``audience_of`` from ``(is_targeted, source name, target names)`` rows."""
    audience: Audience = None
    for is_targeted, source, targets in rows:
        if not is_targeted:
            continue
        mine = frozenset({source, *(targets or ())})
        audience = mine if audience is None else audience & mine
    return audience


def audience_of(items: Iterable[KnowledgeItem]) -> Audience:
    """Who may see every one of ``items``: the intersection of their audiences."""
    return audience_from_rows((i.is_targeted, i.source.name, i.target_names) for i in items)


def event_visibility(audience: Audience) -> dict:
    """``publish_event`` keyword arguments for an event about things seen by ``audience``
    (an empty audience: people only)."""
    if audience is None:
        return {"targets": (), "private": False}
    return {"targets": sorted(audience), "private": True}
