"""The broadcast pipeline's one extension point: ``items_stored``.

The core (``knowledge``) knows no app built on it. An app that must act on new knowledge in
the same transaction as it is stored (``conflicts`` detects contradictions) registers one
receiver from its ``AppConfig.ready``::

    hooks.connect_items_stored(detect_conflicts)

Contract of a receiver ``fn(batch: Sequence[StoredItem]) -> list[dict] | None``
-------------------------------------------------------------------------------

When it runs. Once per batch of items that ``knowledge.actions`` stores together (one item
for ``do_broadcast``; up to a run of a bulk request), inside the broadcast transaction,
after the batch's rows are written and before their ``knowledge_broadcast`` events are
published. The items of one batch have distinct (knowledge type, subject) and one source.

What it may do. Read and write rows in the caller's transaction; set
``stored.conflict_ids`` (they go into the broadcast's response and event); change an item's
status (then reload it: the pipeline publishes the item as the receiver leaves it).

Its events. A receiver does not publish: it *returns* the specs of its events
(``knowledge.events.publish_events`` specs), and the pipeline publishes them right after the
batch's ``knowledge_broadcast`` events, in the same INSERT. So an item's broadcast always
has a smaller seq than any event about what its storing caused (docs/api.md, "Event
order"), and a receiver's event can show the state it left. In-process side effects must
tolerate a rollback (the batch may still be rolled back); anything else goes through
``transaction.on_commit``.

Locks already held when it runs (PostgreSQL; SQLite serialises writers instead):

1. the source's ``Worker`` row (its broadcasts serialise);
2. the source's own active items of the batch's subjects (``FOR NO KEY UPDATE``) and the
   rows the batch wrote.

Locks a receiver may take, in this order and no other:

3. the event log's tail lock, ``knowledge.events.lock_log_tail()`` (a transaction-scoped
   advisory lock that ``publish_event`` takes anyway), before it reads anything it will
   decide on, so that concurrent broadcasts on one subject are judged one after the other;
4. rows of its own app (``Conflict``, ``SourceTrust``), only after the tail lock: every
   transaction that locks more than one such row holds the tail lock first, so they are
   taken one transaction at a time and cannot deadlock among themselves (conflict rows in
   id order, trust rows in worker id order all the same);
5. item rows of other sources only without waiting (``select_for_update(skip_locked=True)``
   or ``nowait``): a transaction queued behind it on the tail lock may hold them (a
   broadcast holds its own items, ``do_validate`` its item), so waiting there would deadlock.

It must never wait for a ``Worker`` row lock (``do_clear_state`` holds one while it waits for
the tail). Every other writer follows the same order: ``do_validate`` locks its item, then
the tail (by publishing); ``conflicts`` actions take the tail, then conflict rows, then items
without waiting, then trust rows. The whole table: docs/architecture.md, "Lock order".

If it raises. The batch is rolled back (its savepoint, or the transaction of a single
broadcast) and the pipeline stores each item of a bulk batch alone; an item whose receiver
raises again (or the single item) is rejected with that error (an ``ActionError`` keeps its
status; any other exception becomes that item's storage error), and the other items are
stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # models import nothing from here; annotations only
    from knowledge.models import KnowledgeItem


@dataclass
class StoredItem:
    """One item the pipeline has just written, as a receiver sees it."""

    item: KnowledgeItem  # ``source`` loaded
    outcome: str  # created | refreshed | revised
    previous: KnowledgeItem | None = None  # the source's item it refreshed or superseded
    conflict_ids: list[int] = field(default_factory=list)  # set by receivers


ItemsStoredReceiver = Callable[[Sequence[StoredItem]], "list[dict] | None"]

_receivers: list[ItemsStoredReceiver] = []


def connect_items_stored(receiver: ItemsStoredReceiver) -> None:
    """Register ``receiver`` (once; connecting it again does nothing)."""
    if receiver not in _receivers:
        _receivers.append(receiver)


def disconnect_items_stored(receiver: ItemsStoredReceiver) -> None:
    """Unregister ``receiver`` (nothing if it is not registered)."""
    if receiver in _receivers:
        _receivers.remove(receiver)


def items_stored(batch: Sequence[StoredItem]) -> list[dict]:
    """Run every receiver on ``batch``, in registration order (see the module docstring);
    returns the event specs they returned, in that order, for the pipeline to publish after
    the batch's ``knowledge_broadcast`` events."""
    specs: list[dict] = []
    if not batch:
        return specs
    for receiver in list(_receivers):
        specs.extend(receiver(batch) or ())
    return specs
