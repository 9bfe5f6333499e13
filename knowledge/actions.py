"""Every write on knowledge: broadcast, validate, inbox ack, subscriptions, worker state.

API views, admin actions, dashboard views, workers and commands all call these functions.
Each runs in one transaction, writes its event(s) to the log in that transaction, and
invalidates caches after commit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init
from django.utils import timezone

from identity.models import Worker
from knowledge import cache as knowledge_cache
from knowledge import inbox, metrics, redis_writes
from knowledge.choices import EventKind, ItemStatus, Urgency, ValidationStatus, Verdict
from knowledge.copy_insert import copy_insert, copy_rows
from knowledge.errors import ActionError, storage_error
from knowledge.events import (
    EventFilter,
    LogPosition,
    log_horizon,
    log_position,
    publish_event,
    publish_events,
    read_events,
)
from knowledge.hooks import StoredItem, items_stored
from knowledge.models import (
    Event,
    IdempotencyRecord,
    InboxCursor,
    KnowledgeItem,
    KnowledgeTarget,
    LogState,
    Subscription,
    ValidationRecord,
)
from knowledge.registry import KnowledgeType, registry
from knowledge.resume import INBOX_STARTS, first_position, resume
from knowledge.scopes import read_types
from knowledge.search import add_words
from knowledge.sql import (
    columns,
    execute_together_reading,
    insert,
    insert_statement,
    instances,
    one_round_trip,
    quoted,
    sql_in,
)
from knowledge.visibility import event_visibility, item_audience

log = logging.getLogger(__name__)


# --- Broadcast ------------------------------------------------------------------------------
#
# One pipeline for one item and for many (docs/architecture.md, "Path of a broadcast"):
#
#   validate -> [per run: idempotency lookup -> lock worker + own items -> plan (pure)
#   -> apply (bulk writes) -> hooks.items_stored (conflict detection) -> publish events
#   (the items' knowledge_broadcast, then the receivers' events) -> record idempotency]
#
# A run is a stretch of a chunk whose items have distinct (type, subject) and distinct
# idempotency keys, so that planning from the source's items as they were before the run
# gives the same outcome as storing the items one by one. A run is written in a savepoint;
# if anything in it fails, it is rolled back and its items are stored alone, each in its
# own savepoint, so a failing item is rejected with its reason and the others are stored.


@dataclass
class BroadcastInput:
    """A validated broadcast (see knowledge.api.serializers.BroadcastSerializer)."""

    knowledge_type: str
    payload: dict
    confidence: float
    urgency: int = Urgency.NORMAL
    targets: list[Worker] = field(default_factory=list)
    observed_at: datetime | None = None
    idempotency_key: str | None = None

    def request_hash(self) -> str:
        body = {
            "t": self.knowledge_type,
            "p": self.payload,
            "c": self.confidence,
            "u": int(self.urgency),
            "g": sorted(w.name for w in self.targets),
            "o": self.observed_at.isoformat() if self.observed_at else None,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class BroadcastResult:
    item: KnowledgeItem
    outcome: str  # created | refreshed | revised
    conflict_ids: list[int]
    replayed: bool = False  # an idempotent retry answered from the first result
    # The item as its knowledge_broadcast event rendered it (``_publish``): the answer
    # reuses it, with the freshness of its own moment, instead of rendering it again.
    rendered: dict | None = field(default=None, repr=False, compare=False)

    def as_dict(self, now: datetime | None = None) -> dict:
        if self.rendered is None:
            item = self.item.as_dict(now)
        else:
            item = {**self.rendered, "freshness": round(self.item.freshness(now), 6)}
        return {
            "item": item,
            "outcome": self.outcome,
            "conflicts": self.conflict_ids,
            "replayed": self.replayed,
        }


Outcome = BroadcastResult | ActionError


def do_broadcast(worker: Worker, data: BroadcastInput) -> BroadcastResult:
    """Store one item from ``worker`` and publish ``knowledge_broadcast`` (the pipeline of
    ``do_broadcast_many`` for one item; raises its ActionError if it is rejected).

    - Same idempotency key again: the first result, nothing written (``replayed=True``);
      the same key with a different body raises ActionError(422).
    - Same source, type and subject as one of its active items: the same claim refreshes
      that item (``refreshed``); a new claim supersedes it (``revised``).
    - The ``knowledge.hooks.items_stored`` receivers (conflict detection) run in the same
      transaction, before the event is published; the events they return are published
      right after it (an item's broadcast precedes every conflict event about it).
    The worker row is locked for the transaction, so one worker's broadcasts serialise.
    A storage failure is an ActionError too (``knowledge.errors.storage_error``).
    """
    [result] = do_broadcast_many(worker, [data])
    if isinstance(result, ActionError):
        raise result
    return result


def do_broadcast_many(
    worker: Worker, entries: Sequence[BroadcastInput | ActionError], chunk_size: int = 500
) -> list[Outcome]:
    """Broadcast many items; each either fully stored or rejected with its reason.

    ``entries`` may hold ActionErrors (items the caller already rejected); they are returned
    in place. Items are stored in chunks of ``chunk_size`` per transaction, so a long bulk
    does not hold the log's tail lock for its whole duration. Within a chunk, runs of items
    with distinct (type, subject) and distinct idempotency keys are written in a handful of
    statements each, with the same per-item outcome as ``do_broadcast``. Whatever fails for
    one item (its receiver, a constraint, even the commit of its chunk) rejects that item
    alone: every entry gets a result, and no chunk is committed without its results.
    """
    results: list[Outcome] = []
    for start in range(0, len(entries), chunk_size):
        # The chunk's after-commit Redis writes (the relays' wake-up, the cache's type
        # tokens) in one round trip where they go to the same server.
        with redis_writes.together():
            chunk = _store_chunk(worker, list(entries[start : start + chunk_size]))
            types = {r.item.knowledge_type for r in chunk if isinstance(r, BroadcastResult)}
            knowledge_cache.invalidate_after_commit(sorted(types))
        results.extend(chunk)
    return results


@dataclass
class _Entry:
    """A broadcast that passed validation, with what the type derives from its payload."""

    data: BroadcastInput
    kt: KnowledgeType
    subject: str  # normalised: what matching compares
    claim: str
    request_hash: str
    subject_text: str  # as sent (case kept): what clients are shown


@dataclass
class _Step:
    """The plan for one entry: its stored item (written by ``_apply``)."""

    entry: _Entry
    stored: StoredItem
    target_names: list[str]
    rendered: dict | None = None  # the item as its event shows it (set by ``_publish``)


def _validate(entry: BroadcastInput | ActionError) -> _Entry | ActionError:
    if isinstance(entry, ActionError):
        return entry
    kt = registry.get(entry.knowledge_type)
    if kt is None:
        return ActionError(f"unknown knowledge type {entry.knowledge_type!r}", "knowledge_type")
    try:
        subject, claim = kt.subject_of(entry.payload), kt.claim_of(entry.payload)
    except (KeyError, TypeError, ValueError) as exc:  # the serializer checks the schema first
        return ActionError(
            f"payload lacks what the type's subject and claim need: {exc}", "payload"
        )
    request_hash = entry.request_hash() if entry.idempotency_key else ""
    return _Entry(entry, kt, subject, claim, request_hash, kt.subject_as_sent(entry.payload))


def _store_chunk(worker: Worker, chunk: list[BroadcastInput | ActionError]) -> list[Outcome]:
    """One transaction for the chunk. If its commit fails (a deferred constraint, such as a
    target worker deleted meanwhile), each item is stored again in its own transaction."""
    if len(chunk) == 1:
        return [_store_alone(worker, _validate(chunk[0]))]
    try:
        with transaction.atomic():
            return _store_runs(worker, [_validate(entry) for entry in chunk])
    except Exception:  # noqa: BLE001 - only the commit gets here; each item gets its reason
        return [_store_alone(worker, _validate(entry)) for entry in chunk]


def _store_runs(worker: Worker, entries: list[_Entry | ActionError]) -> list[Outcome]:
    out: list[Outcome] = []
    for run in _batch_runs(entries):
        if isinstance(run, ActionError):
            out.append(run)
        elif len(run) == 1:
            out.append(_store_alone(worker, run[0]))
        else:
            out.extend(_store_run_or_each(worker, run))
    return out


def _store_run_or_each(worker: Worker, run: list[_Entry]) -> list[Outcome]:
    """The run in one savepoint; if anything fails, rolled back and stored item by item."""
    try:
        with transaction.atomic():
            return _store_run(worker, run)
    except Exception:  # noqa: BLE001 - retried one by one below, where it gets its reason
        return [_store_alone(worker, entry) for entry in run]


def _store_alone(worker: Worker, entry: _Entry | ActionError) -> Outcome:
    """One item in its own transaction (or savepoint); every failure is its result."""
    if isinstance(entry, ActionError):
        return entry
    for attempt in range(2):
        try:
            with transaction.atomic():
                # First attempt: the key's lookup travels with the worker row's lock.
                [result] = _store_run(worker, [entry], keys_after_lock=attempt == 0)
            return result
        except _KeyUsed:
            continue  # rolled back: the second attempt reads the key's record first
        except ActionError as exc:
            return exc
        except IntegrityError as exc:
            # A concurrent request with the same idempotency key committed first: the
            # second attempt finds its record and answers with its result.
            if attempt or not entry.data.idempotency_key:
                return storage_error(exc)
        except Exception as exc:  # noqa: BLE001 - a storage failure is this item's error
            return storage_error(exc)
    raise AssertionError("unreachable")


def _batch_runs(entries: list[_Entry | ActionError]) -> list[list[_Entry] | ActionError]:
    """Split a chunk into runs that can be written as one batch: an ActionError stands
    alone; a run ends before an item whose (type, subject) or idempotency key is already in
    it (the later item must see the earlier one, as it would one by one). Without
    ``RETURNING`` from a bulk insert every run is one item."""
    batched = connection.features.can_return_rows_from_bulk_insert
    runs: list[list[_Entry] | ActionError] = []
    current: list[_Entry] = []
    seen: set = set()
    for entry in entries:
        if isinstance(entry, ActionError):
            runs.extend([current, entry] if current else [entry])
            current, seen = [], set()
            continue
        keys = {(entry.kt.name, entry.subject)}
        if entry.data.idempotency_key:
            keys.add(("idempotency", entry.data.idempotency_key))
        if current and (not batched or keys & seen):
            runs.append(current)
            current, seen = [], set()
        current.append(entry)
        seen |= keys
    if current:
        runs.append(current)
    return runs


class _KeyUsed(Exception):
    """An idempotency key turned out used once the worker row was locked
    (``_lock_worker_and_own_items``): roll back and answer from its record."""


def _store_run(worker: Worker, run: list[_Entry], keys_after_lock: bool = False) -> list[Outcome]:
    """The pipeline for one run, in the caller's transaction: replays and rejections from
    the idempotency records, then lock, plan, apply, hooks, events, idempotency records.

    ``keys_after_lock`` (a single item, where statements share a round trip): no lookup of
    the keys first; they are looked up in the round trip of the worker row's lock, and one
    found raises ``_KeyUsed`` (the caller rolls back and calls again without it). New keys,
    nearly all of them, save the lookup's round trip."""
    out: dict[int, Outcome] = {}
    keys: list[str] = []
    if keys_after_lock and one_round_trip():
        todo = list(enumerate(run))
        keys = [e.data.idempotency_key for e in run if e.data.idempotency_key]
    else:
        todo = _replay_or_reject(worker, run, out)
    if todo:
        own = _lock_worker_and_own_items(worker, todo, keys)
        now = timezone.now()
        steps = plan(worker, [entry for _, entry in todo], own, now)
        _apply(steps)
        caused = items_stored([step.stored for step in steps])
        _publish_and_record(worker, steps, now, caused)
        stored = [(step.stored.item.knowledge_type, step.stored.outcome) for step in steps]
        transaction.on_commit(lambda: metrics.count_broadcasts(stored))
        for (index, _), step in zip(todo, steps, strict=True):
            s = step.stored
            out[index] = BroadcastResult(s.item, s.outcome, s.conflict_ids, rendered=step.rendered)
    return [out[index] for index in range(len(run))]


def _replay_or_reject(
    worker: Worker, run: list[_Entry], out: dict[int, Outcome]
) -> list[tuple[int, _Entry]]:
    """Answer entries whose idempotency key was used before (the first result, or 422 for a
    different body) into ``out``; return the others with their index."""
    keys = [e.data.idempotency_key for e in run if e.data.idempotency_key]
    records = {}
    if keys and _used_keys(worker, keys):  # the common case, a new key: one plain statement
        records = {
            r.key: r
            for r in IdempotencyRecord.objects.select_related("item__source").filter(
                worker=worker, key__in=keys
            )
        }
    todo = []
    for index, entry in enumerate(run):
        record = records.get(entry.data.idempotency_key) if entry.data.idempotency_key else None
        if record is None:
            todo.append((index, entry))
        elif record.request_hash != entry.request_hash:
            out[index] = ActionError(
                "idempotency_key was already used with a different body", "idempotency_key", 422
            )
        else:
            out[index] = BroadcastResult(
                record.item, record.outcome, record.conflict_ids, replayed=True
            )
    return todo


def _used_keys(worker: Worker, keys: list[str]) -> bool:
    """Whether ``worker`` used any of ``keys`` before (one statement, no model instances).

    No ``LIMIT 1``: with it the planner counted on an early match and read the worker's
    records in turn (a sequential or worker-only index scan), while most keys are new and
    nothing matches; without it, it probes ``idem_unique`` once per key."""
    with connection.cursor() as cur:
        cur.execute(*_used_keys_statement(worker, keys))
        return cur.fetchone() is not None


def _used_keys_statement(worker: Worker, keys: list[str]) -> tuple[str, list]:
    keys_in, params = sql_in(keys)
    qn = connection.ops.quote_name
    return (
        f"SELECT 1 FROM {quoted(IdempotencyRecord)} WHERE {qn('worker_id')} = %s "
        f"AND {qn('key')} {keys_in}",
        [worker.pk, *params],
    )


def _lock_worker_and_own_items(
    worker: Worker, todo: list[tuple[int, _Entry]], keys: Sequence[str] = ()
) -> dict[tuple[str, str, tuple], KnowledgeItem]:
    """Lock the source's worker row for the transaction (its broadcasts serialise: refresh
    vs duplicate races) and count its broadcasts; then the source's newest active item per
    (type, subject, audience) of the run, locked. Two plain statements in one round trip
    (``execute_together``: the second reads after the first has its lock, with its own
    snapshot, so it sees what the worker's previous broadcast committed). Most broadcasts
    find no own item; the ORM's query building was a tenth of a single broadcast's CPU
    (docs/performance.md, "Single broadcast"). With ``keys``, a third statement looks them
    up, after the lock (it sees the record of a request with the same key that held the
    lock); one found raises ``_KeyUsed``."""
    types_in, t_params = sql_in(sorted({e.kt.name for _, e in todo}))
    subjects_in, s_params = sql_in(sorted({e.subject for _, e in todo}))
    lock = " FOR NO KEY UPDATE" if connection.features.has_select_for_update else ""
    statements = [
        (
            f"UPDATE {quoted(Worker)} SET broadcast_count = broadcast_count + %s WHERE id = %s",
            [len(todo), worker.pk],
        ),
        (
            f"SELECT {columns(KnowledgeItem)} FROM {quoted(KnowledgeItem)} "
            f"WHERE source_id = %s AND status = %s AND knowledge_type {types_in} "
            f"AND subject {subjects_in} ORDER BY observed_at DESC{lock}",
            [worker.pk, str(ItemStatus.ACTIVE), *t_params, *s_params],
        ),
    ]
    if keys:
        statements.append(_used_keys_statement(worker, keys))
    with connection.cursor() as cur:
        rows, *used = execute_together_reading(cur, statements, [1, 2] if keys else [1])
    if any(used):
        raise _KeyUsed
    own: dict[tuple[str, str, tuple], KnowledgeItem] = {}
    for row in instances(KnowledgeItem, rows):
        row.source = worker
        # Only an item with the same audience is "the same item" (knowledge/visibility.py):
        # a private broadcast never refreshes or revises a public item, nor the reverse.
        own.setdefault((row.knowledge_type, row.subject, tuple(row.target_names)), row)
    return own


REFRESH_FIELDS = [
    "payload",
    "subject_text",
    "confidence",
    "urgency",
    "observed_at",
    "observed_ts",
    "refreshed_at",
    "refresh_count",
]


def plan(
    worker: Worker,
    entries: list[_Entry],
    own: dict[tuple[str, str, tuple], KnowledgeItem],
    now: datetime,
) -> list[_Step]:
    """Pure: what each entry does given the source's own active items (no queries).

    Same claim as its own item: ``refreshed`` (that item takes the new payload and
    confidence, ``observed_at`` moves forward, never back); a new claim: a new item that
    supersedes it (``revised``); no own item: a new item (``created``)."""
    steps = []
    for entry in entries:
        data = entry.data
        observed_at = data.observed_at or now
        target_names = sorted({w.name for w in data.targets})
        previous = own.get((entry.kt.name, entry.subject, tuple(target_names)))
        if previous is not None and previous.claim == entry.claim:
            _refresh(previous, entry, observed_at, now)
            stored = StoredItem(previous, "refreshed", previous)
        else:
            item = _new_item(
                worker,
                knowledge_type=entry.kt.name,
                subject=entry.subject,
                subject_text=entry.subject_text,
                claim=entry.claim,
                payload=data.payload,
                confidence=data.confidence,
                urgency=data.urgency,
                is_targeted=bool(target_names),
                target_names=target_names,
                created_at=now,
                observed_at=observed_at,
                observed_ts=observed_at.timestamp(),
            )
            stored = StoredItem(item, "created" if previous is None else "revised", previous)
        steps.append(_Step(entry, stored, target_names))
    return steps


# Each concrete field's attname and default, in the model's order (``_new_item``).
_ITEM_FIELDS = tuple((f.attname, f.get_default) for f in KnowledgeItem._meta.concrete_fields)
_ATTNAMES = tuple(name for name, _ in _ITEM_FIELDS)


def _new_item(source: Worker, **values) -> KnowledgeItem:
    """``KnowledgeItem(source=source, **values)`` (every field given: ``values`` or the
    field's default). What ``Model.__init__`` does for positional values, without its
    per-field loop and its signals, when nothing listens to them (a bulk builds 500): ~6 us
    an item instead of ~11 (Django's keyword ``__init__``: ~23). With a ``pre_init`` or
    ``post_init`` receiver for the model, ``__init__`` itself."""
    row = [values[name] if name in values else default() for name, default in _ITEM_FIELDS]
    if pre_init.has_listeners(KnowledgeItem) or post_init.has_listeners(KnowledgeItem):
        item = KnowledgeItem(*row)
    else:
        item = KnowledgeItem.__new__(KnowledgeItem)
        item._state = ModelState()
        item.__dict__.update(zip(_ATTNAMES, row, strict=True))
    item.source = source
    return item


def _refresh(own: KnowledgeItem, entry: _Entry, observed_at: datetime, now: datetime) -> None:
    data = entry.data
    own.payload = data.payload
    own.subject_text = entry.subject_text  # the latest spelling, as the payload
    own.confidence = data.confidence
    own.urgency = data.urgency
    if observed_at > own.observed_at:
        own.observed_at = observed_at
        own.observed_ts = observed_at.timestamp()
    own.refreshed_at = now
    own.refresh_count += 1


def _apply(steps: list[_Step]) -> None:
    """Write the plan: one INSERT of the new items, UPDATEs of the refreshed and the
    superseded ones, one INSERT of the target links."""
    created = [s.stored.item for s in steps if s.stored.outcome != "refreshed"]
    _insert(created)
    _update([s.stored.item for s in steps if s.stored.outcome == "refreshed"], REFRESH_FIELDS)
    superseded = []
    for s in steps:
        if s.stored.outcome == "revised":
            s.stored.previous.status = ItemStatus.SUPERSEDED
            s.stored.previous.superseded_by = s.stored.item
            superseded.append(s.stored.previous)
    _update(superseded, ["status", "superseded_by"])
    links = [
        KnowledgeTarget(item=s.stored.item, worker=w)
        for s in steps
        if s.stored.outcome != "refreshed"
        for w in s.entry.data.targets
    ]
    copy_insert(KnowledgeTarget, links)


def _insert(items: list[KnowledgeItem]) -> None:
    """One item: a plain INSERT (``knowledge.sql.insert``; the insert trigger adds its words
    to the vocabulary); a run: its words first, in one statement that lets the trigger skip
    the insert (``search.add_words``), then COPY on PostgreSQL (knowledge/copy_insert.py)."""
    if len(items) == 1:
        insert(items[0])
    elif items:
        add_words([item.subject for item in items])
        copy_insert(KnowledgeItem, items)


def _update(items: list[KnowledgeItem], fields: list[str]) -> None:
    if len(items) == 1:
        items[0].save(update_fields=fields)
    elif items:
        KnowledgeItem.objects.bulk_update(items, fields)


def _publish_and_record(
    worker: Worker, steps: list[_Step], now: datetime, caused: list[dict]
) -> None:
    """One ``knowledge_broadcast`` event per item, in input order, then the events the
    ``items_stored`` receivers returned (``caused``: conflicts opened, updated or resolved by
    these items), in one INSERT: the one place a broadcast's events are ordered. Then the
    keyed items' idempotency records: with a single event (a single broadcast that raised
    no conflict event), in the event's round trip (``publish_event``'s ``then``)."""
    specs = []
    for step in steps:
        s = step.stored
        step.rendered = s.item.as_dict(now)
        specs.append(
            {
                "kind": EventKind.KNOWLEDGE_BROADCAST,
                "data": {
                    "item": step.rendered,
                    "outcome": s.outcome,
                    "conflicts": s.conflict_ids,
                    "supersedes": s.previous.pk if s.outcome == "revised" else None,
                },
                "knowledge_type": s.item.knowledge_type,
                "source": worker.name,
                "item_id": s.item.pk,
                "targets": [*step.target_names, worker.name] if step.target_names else (),
            }
        )
    specs.extend(caused)
    records = _idempotency_rows(worker, steps)
    if len(specs) == 1 or not connection.features.can_return_rows_from_bulk_insert:
        # without RETURNING from bulk inserts, runs are one item
        for spec in specs[:-1]:
            publish_event(**spec)
        publish_event(**specs[-1], then=[_record_statement(row) for row in records])
    else:
        publish_events(specs)
        copy_rows(IdempotencyRecord, IDEMPOTENCY_FIELDS, records)


IDEMPOTENCY_FIELDS = ("worker_id", "key", "request_hash", "item_id", "outcome", "conflict_ids")


def _idempotency_rows(worker: Worker, steps: list[_Step]) -> list[tuple]:
    """The first result of each keyed item, as rows of ``IDEMPOTENCY_FIELDS`` (no model
    instance per record of a bulk; ``created_at`` is stamped by the insert)."""
    return [
        (
            worker.pk,
            step.entry.data.idempotency_key,
            step.entry.request_hash,
            step.stored.item.pk,
            step.stored.outcome,
            step.stored.conflict_ids,
        )
        for step in steps
        if step.entry.data.idempotency_key
    ]


def _record_statement(row: tuple) -> tuple[str, list]:
    """One idempotency record's INSERT (SQL, params). A concurrent request that stored the
    same key first makes it fail (``idem_unique``): the IntegrityError that
    ``_store_alone`` answers with that request's result."""
    return insert_statement(IdempotencyRecord(**dict(zip(IDEMPOTENCY_FIELDS, row, strict=True))))


# --- Validation -------------------------------------------------------------------------------


def do_validate(
    item: KnowledgeItem,
    verdict: str,
    *,
    worker: Worker | None = None,
    user=None,
    note: str = "",
) -> KnowledgeItem:
    """Record a verdict on an item and recompute its validation status.

    One verdict per validating worker or person (a new one replaces the old); a worker cannot
    validate its own item. Publishes ``knowledge_validated`` (visible to the item's source).
    """
    if verdict not in Verdict.values:
        raise ActionError(f"verdict must be one of {Verdict.values}", "verdict")
    if worker is not None and item.source_id == worker.pk:
        raise ActionError("a worker cannot validate its own item", "item")
    with transaction.atomic():
        item = (
            KnowledgeItem.objects.select_for_update(no_key=True, of=("self",))
            .select_related("source")
            .get(pk=item.pk)
        )
        if worker is not None:
            ValidationRecord.objects.update_or_create(
                item=item, validator=worker, defaults={"verdict": verdict, "note": note}
            )
        else:
            # One verdict per person too: the latest replaces theirs (the item row is locked).
            if user is not None:
                ValidationRecord.objects.filter(item=item, validator=None, user=user).delete()
            ValidationRecord.objects.create(item=item, user=user, verdict=verdict, note=note)
        verdicts = list(item.validations.values_list("verdict", flat=True))
        confirms = verdicts.count(Verdict.CONFIRMED)
        disputes = verdicts.count(Verdict.DISPUTED)
        if confirms > disputes:
            item.validation_status = ValidationStatus.CONFIRMED
        elif disputes > confirms:
            item.validation_status = ValidationStatus.DISPUTED
        else:
            item.validation_status = ValidationStatus.UNVALIDATED
        item.save(update_fields=["validation_status"])
        validator = worker.name if worker else f"user:{getattr(user, 'username', '?')}"
        publish_event(
            EventKind.KNOWLEDGE_VALIDATED,
            {
                "item_id": item.pk,
                "verdict": verdict,
                "validator": validator,
                "validation_status": item.validation_status,
                "confirmations": confirms,
                "disputes": disputes,
                "workers": [item.source.name],
            },
            knowledge_type=item.knowledge_type,
            source=validator,
            item_id=item.pk,
            **event_visibility(item_audience(item)),
        )
    knowledge_cache.invalidate_after_commit([item.knowledge_type])
    return item


# --- Subscriptions and the inbox -----------------------------------------------------------------

INBOX_EVENT_KINDS = (
    EventKind.KNOWLEDGE_BROADCAST,
    EventKind.CONFLICT_DETECTED,
    EventKind.CONFLICT_UPDATED,
    EventKind.KNOWLEDGE_RESOLVED,
    EventKind.KNOWLEDGE_VALIDATED,
)


def get_subscription(worker: Worker) -> Subscription:
    sub, _ = Subscription.objects.get_or_create(worker=worker)
    sub.worker = worker
    return sub


def _check_types(types: list[str], field_name: str = "types") -> None:
    unknown = [t for t in types if t not in registry]
    if unknown:
        raise ActionError(f"unknown knowledge type(s): {', '.join(unknown)}", field_name)


def _check_sources(sources: list[str]) -> None:
    known = set(Worker.objects.filter(name__in=sources).values_list("name", flat=True))
    unknown = [s for s in sources if s not in known]
    if unknown:
        raise ActionError(f"unknown worker(s): {', '.join(unknown)}", "sources")


def _check_event_kinds(kinds: list[str]) -> None:
    unknown = [k for k in kinds if k not in EventKind.values]
    if unknown:
        raise ActionError(f"unknown event kind(s): {', '.join(unknown)}", "events")


def do_subscribe(
    worker: Worker,
    *,
    types: list[str] = (),
    sources: list[str] = (),
    events: list[str] = (),
    min_urgency: int | None = None,
) -> Subscription:
    """Widen a worker's standing filter: add types (unmuting them), sources and event kinds."""
    _check_types(list(types))
    _check_sources(list(sources))
    _check_event_kinds(list(events))
    with transaction.atomic():
        sub = get_subscription(worker)
        sub = Subscription.objects.select_for_update().get(pk=sub.pk)
        sub.worker = worker
        sub.types = sorted(set(sub.types) | set(types))
        sub.muted_types = sorted(set(sub.muted_types) - set(types))
        sub.sources = sorted(set(sub.sources) | set(sources))
        sub.events = sorted(set(sub.events) | set(events))
        if min_urgency is not None:
            sub.min_urgency = min_urgency
        sub.save()
    return sub


def do_unsubscribe(
    worker: Worker,
    *,
    types: list[str] = (),
    sources: list[str] = (),
    events: list[str] = (),
) -> Subscription:
    """Narrow a worker's standing filter; with no lists at all, reset it to the defaults."""
    _check_types(list(types))
    _check_event_kinds(list(events))
    with transaction.atomic():
        sub = get_subscription(worker)
        sub = Subscription.objects.select_for_update().get(pk=sub.pk)
        sub.worker = worker
        if not (types or sources or events):
            sub.types, sub.muted_types, sub.sources, sub.events = [], [], [], []
            sub.min_urgency = Urgency.LOW
        else:
            sub.types = sorted(set(sub.types) - set(types))
            sub.muted_types = sorted(set(sub.muted_types) | set(types))
            sub.sources = sorted(set(sub.sources) - set(sources))
            sub.events = sorted(set(sub.events) - set(events))
        sub.save()
    return sub


class InboxFilter(EventFilter):
    """What belongs in a worker's inbox.

    - ``knowledge_broadcast`` from another worker, of one of its effective types (from its
      subscribed sources, at or above its minimum urgency), of a type propagated to everyone,
      or targeted at it;
    - ``conflict_detected`` / ``conflict_updated`` / ``knowledge_resolved`` /
      ``knowledge_validated`` naming it in
      ``data.workers`` (its items were involved).
    """

    def __init__(self, worker: Worker, sub: Subscription):
        self.viewer = worker.name
        self.read_types = read_types(worker)
        self.types = sub.effective_types() | registry.broadcast_types()
        self.sources = set(sub.sources)
        self.kinds = set(sub.events) if sub.events else set(INBOX_EVENT_KINDS)
        self.min_urgency = sub.min_urgency

    def q(self):
        """SQL prefilter (a superset of ``matches``): broadcasts of other workers that are
        targeted or of a wanted type and source; other kinds are checked in Python. Without
        it a worker interested in few types reads the whole log page by page."""
        others = Q(kind__in=self.kinds - {EventKind.KNOWLEDGE_BROADCAST})
        if EventKind.KNOWLEDGE_BROADCAST not in self.kinds:
            return others
        wanted = Q(knowledge_type__in=self.types)
        if self.sources:
            wanted &= Q(source__in=self.sources)
        broadcasts = (
            Q(kind=EventKind.KNOWLEDGE_BROADCAST)
            & ~Q(source=self.viewer)
            & (Q(is_targeted=True) | wanted)
        )
        return broadcasts | others

    def matches(self, event: Event) -> bool:
        if event.kind not in self.kinds or not self.visible(event):
            return False
        if event.kind == EventKind.KNOWLEDGE_BROADCAST:
            if event.source == self.viewer:
                return False
            if event.is_targeted:
                return True  # visible_to already checked it names this worker
            if event.knowledge_type not in self.types:
                return False
            if self.sources and event.source not in self.sources:
                return False
            item = event.data.get("item") or {}
            urgency = Urgency.from_label(item.get("urgency", "normal"))
            return urgency >= self.min_urgency
        return self.viewer in event.data.get("workers", ())


@dataclass
class InboxPage:
    epoch: str
    events: list[Event]
    ack: int  # consume the page: pass it as the next read's ack, or to do_ack
    position: int  # the durable cursor before this page
    top: int
    recovered: bool


def inbox_start(
    worker: Worker, start: str = "now", pos: LogPosition | None = None
) -> tuple[int, str]:
    """(position, epoch) where ``worker``'s inbox starts on its first read: ``now`` (the
    default) is the log's position when the worker was created, ``beginning`` the oldest
    event the log holds (knowledge/resume.py, ``first_position``). ``pos``: the log's
    position if the caller just read it."""
    if start not in INBOX_STARTS:
        raise ActionError(f"must be one of {', '.join(INBOX_STARTS)}", "start")
    pos = pos or log_position()
    at_creation = (
        Event.objects.filter(created_at__lt=worker.created_at)
        .order_by("-seq")
        .values_list("seq", flat=True)
        .first()
    )
    return first_position(start, pos, at_creation or 0), pos.epoch


def read_inbox(
    worker: Worker,
    limit: int = 100,
    *,
    start: str = "now",
    ack: int | None = None,
    epoch: str | None = None,
) -> InboxPage:
    """The next events of ``worker``'s inbox after its durable cursor.

    ``ack``: first acknowledge the page that offered it (the previous read's ``ack``; in
    ``epoch`` if given), then read from there: a worker that acks each page on its next read
    pays one call and at most one write per page. A crash before that read redelivers the
    page (at-least-once). The ack is checked (``knowledge.inbox.check_ack``: 409 when stale,
    from another epoch or beyond what was offered). Without ``ack`` nothing is consumed.

    A worker's first read creates its cursor where ``start`` says (``inbox_start``: ``now``
    by default, the position at the worker's creation; ``beginning``: the oldest event held);
    later reads ignore ``start``. Where it resumes is the one resume rule
    (knowledge/resume.py): if the log was reset, restored or pruned past the cursor,
    ``recovered`` is False and the cursor moves to the log's top (the worker reloads what it
    needs with a query).

    Lean on purpose (it is the worker fleet's reception overhead, docs/performance.md): one
    statement reads the cursor, the subscription and the log's position, one reads the
    events (none when the log has nothing after the cursor), and at most one write records
    what moved: the ack, the offered mark and the received count (none when nothing did).
    """
    state = inbox.inbox_state(worker)
    if ack is not None:
        inbox.check_ack(worker, state, ack, epoch)
    if not state.exists:  # the first read: where the inbox starts
        state.position, state.epoch = inbox_start(worker, start, state.log)
        state.delivered = state.position
    answer = resume(max(state.position, ack or 0), state.epoch, state.log)
    pos, position, recovered = answer.log, answer.position, answer.recovered
    events, scanned_to = read_events(position, InboxFilter(worker, state.sub), limit, top=pos.top)
    moved = not recovered or state.epoch != pos.epoch
    seen = position if moved else state.delivered  # events after it are delivered first now
    new = sum(1 for e in events if e.seq > seen)
    if not state.exists:
        _create_cursor(worker, position, pos.epoch, max(scanned_to, position), new)
    else:
        change = inbox.Change(
            position=ack if ack is not None and ack > state.position and not moved else None,
            reset=(position, pos.epoch) if moved else None,
            offered=scanned_to if moved or scanned_to > state.delivered else None,
            count=new,
        )
        if change:
            inbox.record(worker, change)
    if new:  # the /metrics counter, after the delivery is committed
        transaction.on_commit(lambda: metrics.count_received(worker.name, new))
    return InboxPage(pos.epoch, events, scanned_to, position, pos.top, recovered)


def _create_cursor(worker: Worker, position: int, epoch: str, offered: int, new: int) -> None:
    """A worker's first read creates its cursor (a concurrent first read wins)."""
    InboxCursor.objects.bulk_create(
        [InboxCursor(worker=worker, position=position, epoch=epoch, delivered=offered)],
        ignore_conflicts=True,
    )
    if new:
        Worker.objects.filter(pk=worker.pk).update(received_count=F("received_count") + new)


def do_ack(worker: Worker, seq: int) -> InboxCursor:
    """Advance the worker's durable cursor to ``seq`` (never backwards, never past the top).

    One conditional UPDATE after reading the log's position (which bounds ``seq``); the
    cursor row is created only by a worker's first ack or read."""
    pos = log_position()
    if seq > pos.top:
        raise ActionError(f"seq {seq} is beyond the log's top ({pos.top})", "seq")
    if seq < 0:
        raise ActionError("seq must be >= 0", "seq")
    now = timezone.now()
    table = connection.ops.quote_name(InboxCursor._meta.db_table)
    epoch = InboxCursor._meta.get_field("epoch").get_db_prep_value(uuid.UUID(pos.epoch), connection)
    acked_at = InboxCursor._meta.get_field("acked_at").get_db_prep_value(now, connection)
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {table} SET position = CASE WHEN position < %s THEN %s ELSE position END, "
            "epoch = %s, acked_at = %s WHERE worker_id = %s RETURNING position, delivered",
            [seq, seq, epoch, acked_at, worker.pk],
        )
        row = cur.fetchone()
    if row is None:
        with transaction.atomic():
            cursor, _ = InboxCursor.objects.select_for_update().get_or_create(worker=worker)
            cursor.position = max(cursor.position, seq)
            cursor.epoch = pos.epoch
            cursor.acked_at = now
            cursor.save(update_fields=["position", "epoch", "acked_at"])
        return cursor
    return InboxCursor(
        worker=worker, position=row[0], epoch=pos.epoch, delivered=row[1], acked_at=now
    )


# --- Worker state ---------------------------------------------------------------------------


def do_update_state(worker: Worker, state: dict) -> Worker:
    """Replace the worker's own status document (heartbeats, model statistics...)."""
    encoded = json.dumps(state, default=str)
    if len(encoded) > settings.KNOWLEDGE_EXCHANGE["max_payload_bytes"]:
        raise ActionError("state document is too large", "state", 413)
    Worker.objects.filter(pk=worker.pk).update(state=state, last_seen_at=timezone.now())
    worker.state = state
    return worker


def do_clear_state(worker: Worker, *, actor: str) -> Worker:
    """Clear a worker's state: its status document and counters, and skip its inbox to the
    log's top (pending deliveries are dropped). Its knowledge items are kept.
    Publishes ``worker_state_cleared`` (visible to that worker)."""
    with transaction.atomic():
        pos = log_position()
        Worker.objects.filter(pk=worker.pk).update(state={}, broadcast_count=0, received_count=0)
        publish_event(
            EventKind.WORKER_STATE_CLEARED,
            {
                "worker": worker.name,
                "actor": actor,
                "skipped_to": pos.top,
                "workers": [worker.name],
            },
            source=actor[:64],
            targets=[worker.name],
        )
        # To the log's top as every reader sees it now: lock mode, past the clear event
        # itself (the tail lock is held); snapshot mode, never above the horizon (a cursor
        # there would pass seqs still in flight). The clear event is not an inbox kind, so
        # the inbox is empty afterwards either way.
        top = max(log_horizon(), pos.top)
        InboxCursor.objects.update_or_create(
            worker=worker, defaults={"position": top, "epoch": pos.epoch, "delivered": top}
        )
    worker.refresh_from_db()
    return worker


def do_reset_event_log(*, keep_events: bool = False) -> LogState:
    """Start a new epoch (e.g. after restoring a backup): every consumer resumes with
    ``recovered: false``. Events are deleted unless ``keep_events``."""
    with transaction.atomic():
        state = LogState.objects.select_for_update().get_or_create(id=1)[0]
        top = Event.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
        if not keep_events:
            Event.objects.all().delete()
        state.epoch = uuid.uuid4()
        state.reset_at = timezone.now()
        state.pruned_through = top
        state.save()
    return state


def do_prune_events(older_than: datetime) -> int:
    """Delete events older than ``older_than`` (retention), never past the log's horizon
    (``log_horizon``: with snapshot ordering a transaction still in flight may commit a
    smaller seq, which a prune past it would hide from every consumer); consumers behind
    what was pruned get ``recovered: false``."""
    with transaction.atomic():
        state = LogState.objects.select_for_update().get_or_create(id=1)[0]
        doomed = Event.objects.filter(created_at__lt=older_than, seq__lte=log_horizon())
        last = doomed.order_by("-seq").values_list("seq", flat=True).first()
        if last is None:
            return 0
        count, _ = Event.objects.filter(seq__lte=last).delete()
        state.pruned_through = max(state.pruned_through, last)
        state.save(update_fields=["pruned_through"])
    return count
