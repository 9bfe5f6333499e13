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

The other mode, ``event_ordering = "snapshot"`` (PostgreSQL only; docs/decisions/
event-log-ordering.md has the proof): publishers take no log-wide lock; readers stop at a
*horizon*, the highest seq below which every transaction that drew a seq has finished.
A publisher, in a savepoint, first makes sure its transaction has an xid, then draws its
seqs (``nextval``), then inserts the rows, so the rows' ``xmin`` (the savepoint's own xid,
assigned at that insert) is newer than the xid of every transaction that drew a smaller seq.
A reader takes its statement's snapshot, B = the oldest xid still running (its own excluded),
and the horizon is the highest visible seq whose row ``xmin`` is older than B: everything
that drew a smaller seq has finished, so it is visible now or never will be. One function
(``log_horizon``) gives every reader its top: ``read_events``, ``log_position`` and the relay.
Conflict detection then locks the subjects it reads (``subject_lock_statement``), not the
whole log.

Events are written only by actions (``*/actions.py``); readers are woken after commit.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from config.product import product_settings
from knowledge.copy_insert import copy_rows
from knowledge.models import Event, LogState
from knowledge.sql import execute_together, insert_statement

log = logging.getLogger(__name__)

ADVISORY_LOCK_KEY = 0x4B58_0001  # "KX" 1: the event log tail
SUBJECT_LOCK_SPACE = 0x4B58_0002  # "KX" 2: one (type, subject) in snapshot mode

_locked_in = threading.local()


def snapshot_ordering() -> bool:
    """Publishers order the log without the tail lock (``event_ordering = "snapshot"``, on
    PostgreSQL; SQLite serialises writers anyway and keeps the lock mode)."""
    return connection.vendor == "postgresql" and product_settings().event_ordering == "snapshot"


def lock_log_tail() -> None:
    """Serialise the tail of publishing transactions (PostgreSQL only). Take it before any
    row lock a transaction waits for after it (see the module docstring). In snapshot mode
    publishers no longer take it; the ``conflicts`` actions still do, to decide one at a time."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cur:
        cur.execute(*_TAIL_LOCK)


# Re-entrant within a transaction; released automatically at commit or rollback.
_TAIL_LOCK = ("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])


def subject_lock_statement(keys) -> tuple[str, list] | None:
    """The lock conflict detection takes before it reads what it decides on, so that it
    serialises with every other transaction deciding on the same (knowledge type, subject)
    pairs ``keys``: one statement (SQL, params), sent in the same round trip as the read it
    protects (``knowledge.sql.execute_together``: the read still takes its snapshot after
    the lock), or None when nothing is to be locked (SQLite serialises writers).

    Lock mode: the tail lock (one decision at a time, log-wide). Snapshot mode: one
    transaction-scoped advisory lock per pair, taken in key order (no deadlock among them);
    a receiver that then finds the subject busy takes the tail lock as well (see
    ``conflicts.actions.detect_conflicts`` and docs/architecture.md, "Lock order")."""
    if connection.vendor != "postgresql":
        return None
    if not snapshot_ordering():
        return _TAIL_LOCK
    ids = sorted({_subject_key(t, s) for t, s in keys})
    if not ids:
        return None
    return (
        "SELECT pg_advisory_xact_lock(%s, k) FROM unnest(%s::int[]) AS u(k)",
        [SUBJECT_LOCK_SPACE, ids],
    )


def _subject_key(knowledge_type: str, subject: str) -> int:
    """A stable signed 32-bit key for (type, subject); a collision only serialises more."""
    digest = hashlib.blake2b(f"{knowledge_type}\x00{subject}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def _insert_unlocked(n: int, insert) -> list[int]:
    """Snapshot mode: draw ``n`` seqs and ``insert(seqs)`` the events with them (see the
    module docstring); returns the seqs, ascending.

    In a savepoint (its xid is assigned by the INSERT or COPY, the savepoint's first write,
    after every seq is drawn): the transaction's own xid first (``pg_current_xact_id``, in the
    subquery, before ``nextval``), then the seqs, then the rows with those seqs."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'seq')) "
            "FROM (SELECT pg_current_xact_id() OFFSET 0) AS x, generate_series(1, %s)",
            [Event._meta.db_table, n],
        )
        seqs = sorted(row[0] for row in cur.fetchall())
        insert(seqs)
        return seqs


def publish_event(
    kind: str,
    data: dict,
    *,
    knowledge_type: str = "",
    source: str = "",
    item_id: int | None = None,
    targets: list[str] | tuple[str, ...] = (),
    private: bool = False,
    then: Sequence[tuple[str, list]] = (),
) -> Event:
    """Append an event to the log in the caller's transaction; wake readers after commit.

    Must be called inside ``transaction.atomic()``, as late in the transaction as possible:
    in lock mode, from here to commit, other publishers wait (in snapshot mode readers wait
    for this transaction instead: its events and any later seq stay above their horizon).
    ``targets`` (or ``private``) makes the event visible only to the workers named (and
    people): ``private`` with no targets, people only. ``then``: statements (SQL, params)
    the caller's transaction runs right after the event's INSERT, sent in its round trip on
    PostgreSQL (``execute_together``; elsewhere one by one): the broadcast's idempotency
    record. One that fails raises as if run alone, and the transaction must roll back.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("publish_event must run inside transaction.atomic()")
    event = Event(
        kind=kind,
        knowledge_type=knowledge_type,
        source=source,
        item_id=item_id,
        is_targeted=private or bool(targets),
        targets=list(targets),
        data=data,
    )
    if connection.vendor == "postgresql":
        _insert_event(event, list(then))
    else:  # SQLite: writers are serialised by the database lock
        event.save(force_insert=True)
        if then:
            with transaction.mark_for_rollback_on_error(), connection.cursor() as cur:
                execute_together(cur, list(then))
    seq = event.seq
    transaction.on_commit(lambda: wake_readers(seq))
    return event


def _insert_event(event: Event, then: list[tuple[str, list]]) -> None:
    """Write ``event`` and set its seq, in one round trip (PostgreSQL), with the statements
    ``then`` after it.

    Lock mode: the tail lock, then the row. Snapshot mode: the order of ``_insert_unlocked``
    (the module docstring) in one statement inside a savepoint: the seq's subquery first
    makes sure the transaction has its xid, then draws the seq (``nextval``), and inserting
    the row assigns the savepoint's xid, the row's ``xmin``, after that draw. (Before: the
    draw, the ORM's INSERT and the savepoint's two statements, four round trips.)"""
    if snapshot_ordering():
        seq = (
            "(SELECT nextval(pg_get_serial_sequence(%s, 'seq')) "
            "FROM (SELECT pg_current_xact_id() OFFSET 0) AS x)"
        )
        statements = [
            ("SAVEPOINT kx_event", []),
            insert_statement(event, seq, (Event._meta.db_table,)),
            ("RELEASE SAVEPOINT kx_event", []),
        ]
    else:
        statements = [_TAIL_LOCK, insert_statement(event)]
    statements += then  # after the event's: its RETURNING stays the second statement's
    # A failure leaves the transaction aborted (with the savepoint open): the enclosing
    # atomic block must roll back, as it would after a failed ``save()``.
    with transaction.mark_for_rollback_on_error(), connection.cursor() as cur:
        [[event.seq]] = execute_together(cur, statements, rows_of=1)
    event._state.adding = False
    event._state.db = connection.alias


#: The fields ``publish_events`` writes, in the order of its rows.
EVENT_FIELDS = (
    "kind",
    "knowledge_type",
    "source",
    "item_id",
    "is_targeted",
    "targets",
    "data",
    "created_at",
)


def publish_events(specs: list[dict]) -> list[int]:
    """Append several events in one COPY (PostgreSQL, 20 events or more; else one INSERT:
    knowledge/copy_insert.py), for the batched bulk broadcast; same contract as
    ``publish_event``. Each spec holds ``kind``, ``data`` and optionally ``knowledge_type``,
    ``source``, ``item_id``, ``targets``, ``private``. Returns the events' seqs, in spec
    order. The rows are written as tuples (``copy_rows``): no ``Event`` instance is built."""
    if not connection.in_atomic_block:
        raise RuntimeError("publish_events must run inside transaction.atomic()")
    if not specs:
        return []
    now = timezone.now()
    rows = [
        (
            spec["kind"],
            spec.get("knowledge_type", ""),
            spec.get("source", ""),
            spec.get("item_id"),
            bool(spec.get("private")) or bool(spec.get("targets")),
            list(spec.get("targets") or ()),
            spec["data"],
            now,
        )
        for spec in specs
    ]
    if snapshot_ordering():
        seqs = _insert_unlocked(len(rows), lambda seqs: copy_rows(Event, EVENT_FIELDS, rows, seqs))
    else:
        lock_log_tail()
        # COPY from 20 events (seqs drawn under the tail lock)
        seqs = copy_rows(Event, EVENT_FIELDS, rows)
    top = max(seqs)
    transaction.on_commit(lambda: wake_readers(top))
    return seqs


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


# The highest visible seq whose row was written (its savepoint's xid, ``xmin``) before the
# oldest transaction still running in this database (B): the snapshot's in-progress list,
# less the reader's own transaction (never in it) and less the transactions that
# pg_stat_activity places in another database (they cannot write this table; an xid it does
# not place is counted), else the snapshot's xmax. xmin is a 32-bit xid: it is compared with
# B modulo 2^32 (a row older than B is at most 2^31 xids older: older rows are frozen by
# vacuum long before, and a frozen xmin reads as 2).
_HORIZON_SQL = """
WITH snap AS (SELECT pg_current_snapshot() AS s),
elsewhere AS (
    SELECT backend_xid::text::bigint AS x FROM pg_stat_activity
    WHERE backend_xid IS NOT NULL AND datid IS NOT NULL
      AND datid <> (SELECT oid FROM pg_database WHERE datname = current_database())
),
oldest AS (
    SELECT COALESCE(
        (SELECT min(x) FROM snap, pg_snapshot_xip(snap.s) AS x
         WHERE x::text::bigint % 4294967296 NOT IN (SELECT x FROM elsewhere)),
        (SELECT pg_snapshot_xmax(s) FROM snap)
    )::text::bigint AS b
)
SELECT e.seq FROM {table} AS e, oldest
WHERE e.xmin::text::bigint < 3
   OR ((oldest.b - e.xmin::text::bigint) % 4294967296 + 4294967296) % 4294967296
      BETWEEN 1 AND 2147483647
ORDER BY e.seq DESC LIMIT 1
"""


def log_bounds() -> tuple[int, int]:
    """(the horizon, the highest seq visible): the relay polls again soon while they differ
    (events committed above the horizon wait for an older transaction to finish)."""
    if not snapshot_ordering():
        top = log_horizon()
        return top, top
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT ({_HORIZON_SQL.format(table=_table())}), (SELECT max(seq) FROM {_table()})"
        )
        horizon, highest = cur.fetchone()
    return horizon or 0, highest or 0


def _table() -> str:
    return connection.ops.quote_name(Event._meta.db_table)


def log_horizon() -> int:
    """The top every reader reads to: no event at or below it can still appear.

    Lock mode (and SQLite): the highest seq, since seq order is commit order. Snapshot mode:
    the highest seq below which every publishing transaction has finished (module docstring);
    events above it are committed or in flight and are read once the horizon passes them.
    """
    if not snapshot_ordering():
        return Event.objects.aggregate(top=Max("seq"))["top"] or 0
    with connection.cursor() as cur:
        cur.execute(_HORIZON_SQL.format(table=_table()))  # no params: "%" is the operator
        row = cur.fetchone()
    return row[0] if row else 0


def top_sql() -> str:
    """``log_horizon`` as a scalar SQL expression, to read the top inside another statement
    (with parameters: ``%`` is escaped)."""
    if not snapshot_ordering():
        return f"(SELECT MAX(seq) FROM {_table()})"
    return "(" + _HORIZON_SQL.format(table=_table()).replace("%", "%%") + ")"


def log_position() -> LogPosition:
    state = LogState.current()
    top = log_horizon()
    return LogPosition(str(state.epoch), max(top, state.pruned_through), state.pruned_through)


class EventFilter:
    """Which events a consumer wants: a SQL prefilter plus an exact Python predicate."""

    viewer: str | None = None  # worker name; None = a person (sees everything)
    read_types: frozenset[str] | None = None  # the viewer's read scope; None = every type

    def q(self) -> Q:
        return Q()

    def in_read_scope(self, event: Event) -> bool:
        """The part of :meth:`visible` that does not depend on who the viewer is."""
        return (
            self.read_types is None
            or not event.knowledge_type
            or event.knowledge_type in self.read_types
        )

    def visible(self, event: Event) -> bool:
        """The viewer may see ``event``: its audience names it (``Event.visible_to``), and a
        public event about a type is within its read scope (knowledge/scopes.py)."""
        if not event.visible_to(self.viewer):
            return False
        return self.in_read_scope(event) or event.is_targeted or event.source == self.viewer

    def visible_to_any_viewer(self, event: Event) -> bool:
        """:meth:`visible` holds whoever the viewer is (a public event within the scope)."""
        return not event.is_targeted and self.in_read_scope(event)

    def matches(self, event: Event) -> bool:
        return self.visible(event)

    def share_key(self) -> tuple | None:
        """Filters with equal keys select the same events before :meth:`visible` (see
        :meth:`FeedFilter.selects`): the relay checks an event once per key, not once per
        connection. None: this filter shares nothing."""
        return None


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

    def selects(self, event: Event) -> bool:
        """The subscription's own choice (events, types, sources), whoever the viewer is."""
        if self.kinds and event.kind not in self.kinds:
            return False
        if self.types and event.knowledge_type and event.knowledge_type not in self.types:
            return False
        return not self.sources or event.source in self.sources

    def matches(self, event: Event) -> bool:
        return self.selects(event) and self.visible(event)

    def share_key(self) -> tuple:
        # Everything selects() and visible_to_any_viewer() read; the viewer is not in it.
        return (type(self), self.kinds, self.types, self.sources, self.read_types)


def read_events(
    since: int, flt: EventFilter, limit: int = 500, top: int | None = None
) -> tuple[list[Event], int]:
    """Events after ``since`` matching ``flt``, in seq order, at most ``limit``.

    Returns (events, scanned_to): ``scanned_to`` is the position a consumer may move to,
    so that it advances past filtered-out events too. It reads no further than the log's
    horizon (``log_horizon``): nothing at or below it can still appear later. ``top``: the
    log's top as the caller just read it with ``log_position()`` (saves reading it twice);
    default: read it here.
    """
    if top is None:
        top = log_horizon()
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
