"""The durable event log: publishing inside a transaction, reading in seq order.

Ordering guarantee: ``seq`` order equals commit order. On PostgreSQL every publishing
transaction holds the log's tail lock (``lock_log_tail``, a transaction-scoped advisory
lock) from before its first event to its commit, so no other publisher can insert (and so
draw a seq) in between. ``publish_event`` takes it if the transaction does not hold it yet;
conflict detection (the ``knowledge.hooks.items_stored`` receiver) and the ``conflicts``
actions take it earlier, before they read what they decide on, and only then lock conflict
rows, other sources' items (without waiting) and trust rows. Row locks a transaction needs
before the tail (its source's worker row, its own items, an item being validated) are taken
before it. The whole order is in docs/architecture.md, "Lock order". On SQLite writers are
already serialised by the database lock (``transaction_mode=IMMEDIATE``).
A reader that has seen seq S and reads ``seq > S`` therefore never skips an event that
commits later with a smaller seq.

Events are written only by actions (``*/actions.py``); readers are woken after commit.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Max, Q

from knowledge.models import Event, LogState

log = logging.getLogger(__name__)

ADVISORY_LOCK_KEY = 0x4B58_0001  # "KX" 1: the event log tail

_locked_in = threading.local()


def lock_log_tail() -> None:
    """Serialise the tail of publishing transactions (PostgreSQL only). Take it before any
    row lock a transaction waits for after it (see the module docstring)."""
    if connection.vendor != "postgresql":
        return
    # Re-entrant within a transaction; released automatically at commit or rollback.
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])


def publish_event(
    kind: str,
    data: dict,
    *,
    knowledge_type: str = "",
    source: str = "",
    item_id: int | None = None,
    targets: list[str] | tuple[str, ...] = (),
    private: bool = False,
) -> Event:
    """Append an event to the log in the caller's transaction; wake readers after commit.

    Must be called inside ``transaction.atomic()``, as late in the transaction as possible:
    from here to commit, other publishers wait. ``targets`` (or ``private``) makes the event
    visible only to the workers named (and people): ``private`` with no targets, people only.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("publish_event must run inside transaction.atomic()")
    lock_log_tail()
    event = Event.objects.create(
        kind=kind,
        knowledge_type=knowledge_type,
        source=source,
        item_id=item_id,
        is_targeted=private or bool(targets),
        targets=list(targets),
        data=data,
    )
    seq = event.seq
    transaction.on_commit(lambda: wake_readers(seq))
    return event


def publish_events(specs: list[dict]) -> list[Event]:
    """Append several events in one INSERT (the batched bulk broadcast); same contract as
    ``publish_event``. Each spec holds ``kind``, ``data`` and optionally ``knowledge_type``,
    ``source``, ``item_id``, ``targets``, ``private``. Returns the events with their seq, in
    spec order."""
    if not connection.in_atomic_block:
        raise RuntimeError("publish_events must run inside transaction.atomic()")
    if not specs:
        return []
    lock_log_tail()
    events = Event.objects.bulk_create(
        [
            Event(
                kind=spec["kind"],
                knowledge_type=spec.get("knowledge_type", ""),
                source=spec.get("source", ""),
                item_id=spec.get("item_id"),
                is_targeted=bool(spec.get("private")) or bool(spec.get("targets")),
                targets=list(spec.get("targets") or ()),
                data=spec["data"],
            )
            for spec in specs
        ]
    )
    top = max(e.seq for e in events)
    transaction.on_commit(lambda: wake_readers(top))
    return events


# --- Waking readers ------------------------------------------------------------------------


def wake_readers(seq: int) -> None:
    """Tell readers in this process (and, through the channel layer, in others) of new events.

    Delivery never depends on this: readers also poll the log. This only cuts latency.
    """
    for hook in list(_wake_hooks):
        try:
            hook(seq)
        except Exception:  # a broken listener must not break a publisher
            log.exception("wake hook failed")


_wake_hooks: list = []


def add_wake_hook(fn) -> None:
    """Register ``fn(seq)`` called after each commit that published events (same process)."""
    if fn not in _wake_hooks:
        _wake_hooks.append(fn)


# --- Reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogPosition:
    epoch: str
    top: int
    pruned_through: int


def log_position() -> LogPosition:
    state = LogState.current()
    top = Event.objects.aggregate(top=Max("seq"))["top"] or 0
    return LogPosition(str(state.epoch), max(top, state.pruned_through), state.pruned_through)


class EventFilter:
    """Which events a consumer wants: a SQL prefilter plus an exact Python predicate."""

    viewer: str | None = None  # worker name; None = a person (sees everything)
    read_types: frozenset[str] | None = None  # the viewer's read scope; None = every type

    def q(self) -> Q:
        return Q()

    def visible(self, event: Event) -> bool:
        """The viewer may see ``event``: its audience names it (``Event.visible_to``), and a
        public event about a type is within its read scope (knowledge/scopes.py)."""
        if not event.visible_to(self.viewer):
            return False
        return (
            self.read_types is None
            or event.is_targeted
            or not event.knowledge_type
            or event.knowledge_type in self.read_types
            or event.source == self.viewer
        )

    def matches(self, event: Event) -> bool:
        return self.visible(event)


@dataclass
class FeedFilter(EventFilter):
    """The live feed's filter (WebSocket ``subscribe`` and ``GET events``). Empty = all."""

    kinds: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()
    viewer: str | None = None
    read_types: frozenset[str] | None = None

    def q(self) -> Q:
        cond = Q()
        if self.kinds:
            cond &= Q(kind__in=self.kinds)
        if self.types:
            cond &= Q(knowledge_type__in=self.types) | Q(knowledge_type="")
        if self.sources:
            cond &= Q(source__in=self.sources)
        return cond

    def matches(self, event: Event) -> bool:
        if self.kinds and event.kind not in self.kinds:
            return False
        if self.types and event.knowledge_type and event.knowledge_type not in self.types:
            return False
        if self.sources and event.source not in self.sources:
            return False
        return self.visible(event)


def read_events(
    since: int, flt: EventFilter, limit: int = 500, top: int | None = None
) -> tuple[list[Event], int]:
    """Events after ``since`` matching ``flt``, in seq order, at most ``limit``.

    Returns (events, scanned_to): ``scanned_to`` is the position a consumer may move to,
    so that it advances past filtered-out events too. Because seq order is commit order,
    nothing at or below the current top can still appear later. ``top``: the log's top as
    the caller just read it with ``log_position()`` (saves reading it twice); default: read
    it here.
    """
    if top is None:
        top = Event.objects.aggregate(top=Max("seq"))["top"] or 0
    if top <= since:
        return [], since
    out: list[Event] = []
    position = since
    while position < top:
        rows = list(
            Event.objects.filter(flt.q(), seq__gt=position, seq__lte=top).order_by("seq")[
                : limit + 1
            ]
        )
        if len(rows) <= limit:
            out.extend(e for e in rows if flt.matches(e))
            position = top
            break
        rows = rows[:limit]
        for event in rows:
            if flt.matches(event):
                out.append(event)
            position = event.seq
            if len(out) >= limit:
                return out, position
    return out, position
