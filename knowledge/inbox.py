"""The inbox's reads and writes in as few statements as possible (issue 12's reception
overhead; docs/performance.md, "Inbox receive").

- ``inbox_state``: one statement reads the worker's cursor, its subscription and the log's
  position (epoch, prune horizon, top).
- ``check_ack``: the rule for an ack carried by a read (``GET receive/<worker>?ack=``): it
  confirms what this inbox offered, no more, no less.
- ``record``: at most one write per read (one statement on PostgreSQL, one transaction on
  SQLite): the ack, the cursor's move after a recovery, the offered mark and the worker's
  received count.

``knowledge.actions.read_inbox`` puts them together.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from identity.models import Worker
from knowledge.errors import ActionError
from knowledge.events import LogPosition, log_position, top_sql
from knowledge.models import InboxCursor, LogState, Subscription
from knowledge.sql import quoted

_SUB_FIELDS = ("types", "muted_types", "sources", "events", "min_urgency")


@dataclass
class InboxState:
    """A worker's inbox as one statement read it. ``exists``: the cursor row exists (its
    first read creates it). ``delivered``: the highest ``ack`` a page has offered this
    worker (every event up to it was either in a page or filtered out)."""

    exists: bool
    position: int
    epoch: str | None
    delivered: int
    sub: Subscription
    log: LogPosition


def _uuid_str(value) -> str | None:
    if value is None:
        return None
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def inbox_state(worker: Worker) -> InboxState:
    """The cursor, the subscription (unsaved defaults when missing: reading creates no
    subscription) and the log's position, in one statement."""
    q = connection.ops.quote_name
    sub_cols = ", ".join(f"s.{q(name)}" for name in _SUB_FIELDS)
    sql = (
        f"SELECT c.{q('worker_id')}, c.{q('position')}, c.{q('epoch')}, c.{q('delivered')}, "
        f"s.{q('worker_id')}, {sub_cols}, l.{q('epoch')}, l.{q('pruned_through')}, {top_sql()} "
        f"FROM {quoted(Worker)} w "
        f"LEFT JOIN {quoted(InboxCursor)} c ON c.{q('worker_id')} = w.{q('id')} "
        f"LEFT JOIN {quoted(Subscription)} s ON s.{q('worker_id')} = w.{q('id')} "
        f"LEFT JOIN {quoted(LogState)} l ON l.{q('id')} = 1 "
        f"WHERE w.{q('id')} = %s"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [worker.pk])
        row = cur.fetchone()
    if row is None:
        raise ActionError(f"no worker {worker.name!r}", "worker", 404)
    cursor_id, position, epoch, delivered, sub_id, *sub_values, log_epoch, pruned, top = row
    sub = Subscription(worker=worker)
    if sub_id is not None:
        for name, value in zip(_SUB_FIELDS, sub_values, strict=True):
            field = Subscription._meta.get_field(name)
            from_db = getattr(field, "from_db_value", None)
            setattr(sub, name, from_db(value, None, connection) if from_db else value)
        sub._state.adding = False
    sub.worker = worker
    if log_epoch is None:  # no log state row yet: the ORM path creates it
        log = log_position()
    else:
        log = LogPosition(_uuid_str(log_epoch), max(top or 0, pruned), pruned)
    return InboxState(
        exists=cursor_id is not None,
        position=position or 0,
        epoch=_uuid_str(epoch),
        delivered=delivered or 0,
        sub=sub,
        log=log,
    )


def check_ack(worker: Worker, state: InboxState, ack: int, epoch: str | None) -> None:
    """An ack carried by a read confirms a page this inbox offered: refused (409, field
    ``ack``) when it is from another epoch of the log, behind the cursor (already
    acknowledged: a stale ack) or beyond the highest ``ack`` any page offered (nothing
    there was delivered). Acking the cursor's own position is a no-op (a retried read)."""
    if ack < 0:
        raise ActionError("must be >= 0", "ack")
    if epoch is not None:
        try:
            epoch = str(uuid.UUID(epoch))
        except ValueError:
            raise ActionError("not an epoch (a UUID)", "epoch") from None
    where = f"{worker.name}'s inbox"
    if not state.exists:
        raise ActionError(f"{where} has delivered nothing yet: read it without ack", "ack", 409)
    if epoch is not None and state.epoch is not None and epoch != state.epoch:
        raise ActionError(
            f"ack {ack} is for epoch {epoch}, but {where} is in epoch {state.epoch} (the log "
            "was reset or restored since): read without ack",
            "ack",
            409,
        )
    if ack < state.position:
        raise ActionError(
            f"ack {ack} is stale: {where} is already acknowledged up to {state.position}",
            "ack",
            409,
        )
    if ack > state.delivered:
        raise ActionError(
            f"ack {ack} is beyond what {where} delivered (up to {state.delivered})", "ack", 409
        )


@dataclass
class Change:
    """What a read changes: ``position`` (acked, only forwards), ``reset`` (the cursor moves
    to ``reset`` = (position, epoch) after a recovery, even backwards), ``offered`` (the new
    offered mark, only forwards unless reset) and ``count`` (events delivered for the first
    time, added to the worker's received count)."""

    position: int | None = None
    reset: tuple[int, str] | None = None
    offered: int | None = None
    count: int = 0

    def __bool__(self) -> bool:
        return bool(self.position is not None or self.reset or self.offered is not None)


def record(worker: Worker, change: Change) -> None:
    """One write (see ``Change``): one statement on PostgreSQL (a data-modifying CTE), one
    transaction on SQLite (one commit)."""
    q = connection.ops.quote_name
    sets, params = [], []
    if change.reset is not None:
        epoch = InboxCursor._meta.get_field("epoch").get_db_prep_value(
            uuid.UUID(change.reset[1]), connection
        )
        sets += [f"{q('position')} = %s", f"{q('epoch')} = %s", f"{q('delivered')} = %s"]
        params += [change.reset[0], epoch, change.offered or change.reset[0]]
    else:
        if change.position is not None:
            acked_at = InboxCursor._meta.get_field("acked_at").get_db_prep_value(
                timezone.now(), connection
            )
            sets += [_forward("position"), f"{q('acked_at')} = %s"]
            params += [change.position, change.position, acked_at]
        if change.offered is not None:
            sets.append(_forward("delivered"))
            params += [change.offered, change.offered]
    update_cursor = (
        f"UPDATE {quoted(InboxCursor)} SET {', '.join(sets)} WHERE {q('worker_id')} = %s"
    )
    params.append(worker.pk)
    if not change.count:
        with connection.cursor() as cur:
            cur.execute(update_cursor, params)
        return
    update_worker = (
        f"UPDATE {quoted(Worker)} SET {q('received_count')} = {q('received_count')} + %s "
        f"WHERE {q('id')} = %s"
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(
                f"WITH c AS ({update_cursor}) {update_worker}", [*params, change.count, worker.pk]
            )
        return
    # SQLite has no data-modifying CTE: two statements in one transaction (one commit).
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(update_cursor, params)
        cur.execute(update_worker, [change.count, worker.pk])


def _forward(column: str) -> str:
    """``column`` moves to the parameter only if that is forwards (never back)."""
    c = connection.ops.quote_name(column)
    return f"{c} = CASE WHEN {c} < %s THEN %s ELSE {c} END"
