"""Every write on knowledge: broadcast, validate, inbox ack, subscriptions, worker state.

API views, admin actions, dashboard views, workers and commands all call these functions.
Each runs in one transaction, writes its event(s) to the log in that transaction, and
invalidates caches after commit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from identity.models import Worker
from knowledge import cache as knowledge_cache
from knowledge.choices import EventKind, ItemStatus, Urgency, ValidationStatus, Verdict
from knowledge.events import EventFilter, log_position, publish_event, publish_events, read_events
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
from knowledge.registry import registry


class ActionError(Exception):
    """A request the action refuses; ``field`` names the culprit, ``status`` the HTTP code."""

    status = 400

    def __init__(self, message: str, field: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if status is not None:
            self.status = status


# --- Broadcast ------------------------------------------------------------------------------


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

    def as_dict(self, now: datetime | None = None) -> dict:
        return {
            "item": self.item.as_dict(now),
            "outcome": self.outcome,
            "conflicts": self.conflict_ids,
            "replayed": self.replayed,
        }


def do_broadcast(worker: Worker, data: BroadcastInput) -> BroadcastResult:
    """Store one item from ``worker`` and publish ``knowledge_broadcast``.

    - Same idempotency key again: the first result, nothing written (``replayed=True``);
      the same key with a different body raises ActionError(422).
    - Same source, type and subject as one of its active items: the same claim refreshes
      that item (``refreshed``); a new claim supersedes it (``revised``).
    - Conflict detection runs in the same transaction (``conflicts.actions``).
    The worker row is locked for the transaction, so one worker's broadcasts serialise.
    """
    for attempt in range(2):
        try:
            with transaction.atomic():
                result = _broadcast_in_transaction(worker, data)
            knowledge_cache.invalidate_after_commit([data.knowledge_type])
            return result
        except IntegrityError:
            # A concurrent retry with the same idempotency key won; answer with its result.
            if attempt or not data.idempotency_key:
                raise
    raise AssertionError("unreachable")


def do_broadcast_many(
    worker: Worker, entries: list[BroadcastInput | ActionError], chunk_size: int = 500
) -> list[BroadcastResult | ActionError]:
    """Broadcast many items; each either fully stored or rejected with its reason.

    Items are stored in chunks of ``chunk_size`` per transaction, so a long bulk does not
    hold the log's tail lock for its whole duration. Within a chunk, consecutive items with
    distinct (type, subject) and distinct idempotency keys are written in batches (one
    INSERT for the items, one for their events, ...; see ``_broadcast_batch``) with the
    same per-item outcome as ``do_broadcast``: refresh/revise of the source's own items,
    idempotent replays, ``detect_conflicts(item, outcome)`` and one ``knowledge_broadcast``
    event per stored item. If a batch fails as a whole it is rolled back and its items are
    stored one by one (each in a savepoint), so one bad item never takes others with it.
    """
    results: list[BroadcastResult | ActionError] = []
    types: set[str] = set()
    for start in range(0, len(entries), chunk_size):
        chunk = entries[start : start + chunk_size]
        with transaction.atomic():
            for run in _batch_runs(chunk):
                if isinstance(run, ActionError):
                    results.append(run)
                    continue
                batch = None
                if len(run) > 1 and connection.features.can_return_rows_from_bulk_insert:
                    try:
                        with transaction.atomic():
                            batch = _broadcast_batch(worker, run)
                    except (ActionError, IntegrityError):
                        batch = None  # rolled back: store them one by one below
                if batch is None:
                    batch = [_broadcast_one_in_savepoint(worker, entry) for entry in run]
                for entry, result in zip(run, batch, strict=True):
                    results.append(result)
                    if not isinstance(result, ActionError):
                        types.add(entry.knowledge_type)
    knowledge_cache.invalidate_after_commit(sorted(types))
    return results


REFRESH_FIELDS = ["payload", "confidence", "urgency", "observed_at", "observed_ts", "refreshed_at", "refresh_count"]


def _apply_refresh(own: KnowledgeItem, data: BroadcastInput, observed_at: datetime, now: datetime) -> None:
    """The source repeated its claim: take the new payload and confidence, move
    ``observed_at`` forward (never back), count the refresh. The caller saves."""
    own.payload = data.payload
    own.confidence = data.confidence
    own.urgency = data.urgency
    if observed_at > own.observed_at:
        own.observed_at = observed_at
        own.observed_ts = observed_at.timestamp()
    own.refreshed_at = now
    own.refresh_count += 1


def _new_item(kt, worker: Worker, data: BroadcastInput, subject: str, claim: str,
              target_names: list[str], observed_at: datetime, now: datetime) -> KnowledgeItem:
    """An unsaved item for a broadcast (the single and the batch path both use it)."""
    return KnowledgeItem(
        knowledge_type=kt.name,
        source=worker,
        subject=subject,
        claim=claim,
        payload=data.payload,
        confidence=data.confidence,
        urgency=data.urgency,
        is_targeted=bool(target_names),
        target_names=target_names,
        created_at=now,
        observed_at=observed_at,
        observed_ts=observed_at.timestamp(),
    )


def _broadcast_one_in_savepoint(worker: Worker, entry: BroadcastInput) -> BroadcastResult | ActionError:
    try:
        with transaction.atomic():
            return _broadcast_in_transaction(worker, entry)
    except ActionError as exc:
        return exc
    except IntegrityError:
        return ActionError("idempotency_key was used concurrently", "idempotency_key", 409)


def _batch_runs(chunk: list) -> list:
    """Split a chunk into runs that can be written as one batch: an ActionError stands
    alone; a run ends before an item whose (type, subject) or idempotency key is already in
    it (the later item must see the earlier one, as it would one by one)."""
    runs: list = []
    current: list[BroadcastInput] = []
    seen_subjects: set = set()
    seen_keys: set = set()
    for entry in chunk:
        if isinstance(entry, ActionError):
            if current:
                runs.append(current)
                current, seen_subjects, seen_keys = [], set(), set()
            runs.append(entry)
            continue
        kt = registry.get(entry.knowledge_type)
        subject = kt.subject_of(entry.payload) if kt else None
        key = (entry.knowledge_type, subject)
        if current and (key in seen_subjects or (entry.idempotency_key and entry.idempotency_key in seen_keys)):
            runs.append(current)
            current, seen_subjects, seen_keys = [], set(), set()
        current.append(entry)
        seen_subjects.add(key)
        if entry.idempotency_key:
            seen_keys.add(entry.idempotency_key)
    if current:
        runs.append(current)
    return runs


def _broadcast_batch(worker: Worker, run: list[BroadcastInput]) -> list[BroadcastResult | ActionError]:
    """``_broadcast_in_transaction`` for a run of items with distinct (type, subject) and
    distinct idempotency keys, in a handful of statements. Raises (and the caller rolls
    back) on anything unexpected; per-item rejections are returned in place."""
    out: list[BroadcastResult | ActionError | None] = [None] * len(run)
    keyed = [e.idempotency_key for e in run if e.idempotency_key]
    records = {}
    if keyed:
        records = {
            r.key: r
            for r in IdempotencyRecord.objects.select_related("item__source").filter(
                worker=worker, key__in=keyed
            )
        }
    todo: list[tuple[int, BroadcastInput, object, str, str, str]] = []
    for i, data in enumerate(run):
        kt = registry.get(data.knowledge_type)
        if kt is None:
            out[i] = ActionError(f"unknown knowledge type {data.knowledge_type!r}", "knowledge_type")
            continue
        request_hash = data.request_hash() if data.idempotency_key else ""
        record = records.get(data.idempotency_key) if data.idempotency_key else None
        if record is not None:
            if record.request_hash != request_hash:
                out[i] = ActionError(
                    "idempotency_key was already used with a different body", "idempotency_key", 422
                )
            else:
                out[i] = BroadcastResult(record.item, record.outcome, record.conflict_ids, replayed=True)
            continue
        todo.append((i, data, kt, kt.subject_of(data.payload), kt.claim_of(data.payload), request_hash))
    if not todo:
        return out

    # Lock this worker's row (as one by one): its broadcasts serialise.
    Worker.objects.filter(pk=worker.pk).update(broadcast_count=F("broadcast_count") + len(todo))
    now = timezone.now()
    wanted = {(kt.name, subject) for _, _, kt, subject, _, _ in todo}
    own_by_key: dict = {}
    for row in (
        KnowledgeItem.objects.select_for_update()
        .filter(
            source=worker,
            status=ItemStatus.ACTIVE,
            knowledge_type__in={t for t, _ in wanted},
            subject__in={s for _, s in wanted},
        )
        .order_by("-observed_at")
    ):
        own_by_key.setdefault((row.knowledge_type, row.subject), row)

    plans = []  # (index, data, item, outcome, own, target_names, request_hash)
    created, refreshed, superseded = [], [], []
    for i, data, kt, subject, claim, request_hash in todo:
        observed_at = data.observed_at or now
        target_names = sorted({w.name for w in data.targets})
        own = own_by_key.get((kt.name, subject))
        if own is not None and own.claim == claim:
            _apply_refresh(own, data, observed_at, now)
            refreshed.append(own)
            plans.append((i, data, own, "refreshed", own, target_names, request_hash))
        else:
            item = _new_item(kt, worker, data, subject, claim, target_names, observed_at, now)
            created.append(item)
            plans.append((i, data, item, "revised" if own is not None else "created", own, target_names, request_hash))
    if created:
        KnowledgeItem.objects.bulk_create(created)
    if refreshed:
        KnowledgeItem.objects.bulk_update(refreshed, REFRESH_FIELDS)
    for _, _, item, outcome, own, _, _ in plans:
        if outcome == "revised":
            own.status = ItemStatus.SUPERSEDED
            own.superseded_by = item
            superseded.append(own)
    if superseded:
        KnowledgeItem.objects.bulk_update(superseded, ["status", "superseded_by"])
    links = [KnowledgeTarget(item=item, worker=w) for _, data, item, outcome, _, _, _ in plans
             if outcome != "refreshed" for w in data.targets]
    if links:
        KnowledgeTarget.objects.bulk_create(links)

    from conflicts.actions import detect_conflicts_many  # conflicts builds on knowledge

    for _, _, item, _, own, _, _ in plans:
        item.source = worker
        if own is not None:
            own.source = worker
    detected = detect_conflicts_many([(item, outcome) for _, _, item, outcome, _, _, _ in plans])
    specs, records_new = [], []
    for (i, data, item, outcome, own, target_names, request_hash), conflict_ids in zip(
        plans, detected, strict=True
    ):
        specs.append(
            {
                "kind": EventKind.KNOWLEDGE_BROADCAST,
                "data": {
                    "item": item.as_dict(now),
                    "outcome": outcome,
                    "conflicts": conflict_ids,
                    "supersedes": own.pk if outcome == "revised" else None,
                },
                "knowledge_type": item.knowledge_type,
                "source": worker.name,
                "item_id": item.pk,
                "targets": [*target_names, worker.name] if target_names else (),
            }
        )
        if data.idempotency_key:
            records_new.append(
                IdempotencyRecord(
                    worker=worker,
                    key=data.idempotency_key,
                    request_hash=request_hash,
                    item=item,
                    outcome=outcome,
                    conflict_ids=conflict_ids,
                )
            )
        out[i] = BroadcastResult(item, outcome, conflict_ids)
    publish_events(specs)
    if records_new:
        IdempotencyRecord.objects.bulk_create(records_new)
    return out


def _broadcast_in_transaction(worker: Worker, data: BroadcastInput) -> BroadcastResult:
    kt = registry.get(data.knowledge_type)
    if kt is None:
        raise ActionError(f"unknown knowledge type {data.knowledge_type!r}", "knowledge_type")

    request_hash = data.request_hash() if data.idempotency_key else ""
    if data.idempotency_key:
        record = (
            IdempotencyRecord.objects.select_related("item__source")
            .filter(worker=worker, key=data.idempotency_key)
            .first()
        )
        if record is not None:
            if record.request_hash != request_hash:
                raise ActionError(
                    "idempotency_key was already used with a different body",
                    "idempotency_key",
                    422,
                )
            return BroadcastResult(record.item, record.outcome, record.conflict_ids, replayed=True)

    # Lock this worker's row: serialises its broadcasts (refresh vs duplicate races).
    Worker.objects.filter(pk=worker.pk).update(broadcast_count=F("broadcast_count") + 1)

    now = timezone.now()
    observed_at = data.observed_at or now
    subject, claim = kt.subject_of(data.payload), kt.claim_of(data.payload)
    target_names = sorted({w.name for w in data.targets})

    own = (
        KnowledgeItem.objects.select_for_update()
        .filter(source=worker, knowledge_type=kt.name, subject=subject, status=ItemStatus.ACTIVE)
        .order_by("-observed_at")
        .first()
    )
    if own is not None and own.claim == claim:
        _apply_refresh(own, data, observed_at, now)
        own.save(update_fields=REFRESH_FIELDS)
        item, outcome = own, "refreshed"
    else:
        item = _new_item(kt, worker, data, subject, claim, target_names, observed_at, now)
        item.save(force_insert=True)
        if data.targets:
            KnowledgeTarget.objects.bulk_create(
                [KnowledgeTarget(item=item, worker=w) for w in data.targets]
            )
        outcome = "created"
        if own is not None:
            own.status = ItemStatus.SUPERSEDED
            own.superseded_by = item
            own.save(update_fields=["status", "superseded_by"])
            outcome = "revised"
    item.source = worker
    if own is not None:
        own.source = worker

    from conflicts.actions import detect_conflicts  # conflicts builds on knowledge

    conflict_ids = detect_conflicts(item, outcome)

    event_data = {
        "item": item.as_dict(now),
        "outcome": outcome,
        "conflicts": conflict_ids,
        "supersedes": own.pk if outcome == "revised" else None,
    }
    publish_event(
        EventKind.KNOWLEDGE_BROADCAST,
        event_data,
        knowledge_type=kt.name,
        source=worker.name,
        item_id=item.pk,
        targets=[*target_names, worker.name] if target_names else (),
    )
    if data.idempotency_key:
        IdempotencyRecord.objects.create(
            worker=worker,
            key=data.idempotency_key,
            request_hash=request_hash,
            item=item,
            outcome=outcome,
            conflict_ids=conflict_ids,
        )
    return BroadcastResult(item, outcome, conflict_ids)


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

    One verdict per validating worker (a new one replaces the old); a worker cannot
    validate its own item. Publishes ``knowledge_validated`` (visible to the item's source).
    """
    if verdict not in Verdict.values:
        raise ActionError(f"verdict must be one of {Verdict.values}", "verdict")
    if worker is not None and item.source_id == worker.pk:
        raise ActionError("a worker cannot validate its own item", "item")
    with transaction.atomic():
        item = KnowledgeItem.objects.select_for_update().select_related("source").get(pk=item.pk)
        if worker is not None:
            ValidationRecord.objects.update_or_create(
                item=item, validator=worker, defaults={"verdict": verdict, "note": note}
            )
        else:
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
        )
    knowledge_cache.invalidate_after_commit([item.knowledge_type])
    return item


# --- Subscriptions and the inbox -----------------------------------------------------------------

INBOX_EVENT_KINDS = (
    EventKind.KNOWLEDGE_BROADCAST,
    EventKind.CONFLICT_DETECTED,
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
    - ``conflict_detected`` / ``knowledge_resolved`` / ``knowledge_validated`` naming it in
      ``data.workers`` (its items were involved).
    """

    def __init__(self, worker: Worker, sub: Subscription):
        self.viewer = worker.name
        self.types = sub.effective_types() | registry.broadcast_types()
        self.sources = set(sub.sources)
        self.kinds = set(sub.events) if sub.events else set(INBOX_EVENT_KINDS)
        self.min_urgency = sub.min_urgency

    def q(self):
        """SQL prefilter (a superset of ``matches``): broadcasts of other workers that are
        targeted or of a wanted type and source; other kinds are checked in Python. Without
        it a worker interested in few types reads the whole log page by page."""
        from django.db.models import Q

        others = Q(kind__in=self.kinds - {EventKind.KNOWLEDGE_BROADCAST})
        if EventKind.KNOWLEDGE_BROADCAST not in self.kinds:
            return others
        wanted = Q(knowledge_type__in=self.types)
        if self.sources:
            wanted &= Q(source__in=self.sources)
        broadcasts = Q(kind=EventKind.KNOWLEDGE_BROADCAST) & ~Q(source=self.viewer) & (Q(is_targeted=True) | wanted)
        return broadcasts | others

    def matches(self, event: Event) -> bool:
        if event.kind not in self.kinds or not event.visible_to(self.viewer):
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
    ack: int  # pass this to do_ack to consume the page
    position: int  # the durable cursor before this page
    top: int
    recovered: bool


def read_inbox(worker: Worker, limit: int = 100) -> InboxPage:
    """The next events of ``worker``'s inbox after its durable cursor (nothing is consumed).

    If the log was reset or pruned past the cursor, the cursor restarts at the oldest
    retained event and ``recovered`` is False.
    """
    cursor, _ = InboxCursor.objects.get_or_create(worker=worker)
    pos = log_position()
    recovered = True
    position = cursor.position
    cursor_epoch = str(cursor.epoch) if cursor.epoch else None
    if (cursor_epoch and cursor_epoch != pos.epoch) or position > pos.top:
        position, recovered = 0, False
    if position < pos.pruned_through:
        position, recovered = pos.pruned_through, False
    events, scanned_to = read_events(position, InboxFilter(worker, get_subscription(worker)), limit)
    if not recovered or cursor_epoch != pos.epoch:
        InboxCursor.objects.filter(pk=cursor.pk).update(position=position, epoch=pos.epoch)
    new = [e for e in events if e.seq > cursor.delivered]
    if new:
        InboxCursor.objects.filter(pk=cursor.pk).update(delivered=max(e.seq for e in new))
        Worker.objects.filter(pk=worker.pk).update(received_count=F("received_count") + len(new))
    return InboxPage(pos.epoch, events, scanned_to, position, pos.top, recovered)


def do_ack(worker: Worker, seq: int) -> InboxCursor:
    """Advance the worker's durable cursor to ``seq`` (never backwards, never past the top)."""
    pos = log_position()
    if seq > pos.top:
        raise ActionError(f"seq {seq} is beyond the log's top ({pos.top})", "seq")
    if seq < 0:
        raise ActionError("seq must be >= 0", "seq")
    with transaction.atomic():
        cursor, _ = InboxCursor.objects.select_for_update().get_or_create(worker=worker)
        if seq > cursor.position:
            cursor.position = seq
        cursor.epoch = pos.epoch
        cursor.acked_at = timezone.now()
        cursor.save(update_fields=["position", "epoch", "acked_at"])
    return cursor


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
        event = publish_event(
            EventKind.WORKER_STATE_CLEARED,
            {"worker": worker.name, "actor": actor, "skipped_to": pos.top, "workers": [worker.name]},
            source=actor[:64],
            targets=[worker.name],
        )
        # Past the clear event itself: the inbox is empty afterwards.
        InboxCursor.objects.update_or_create(
            worker=worker,
            defaults={"position": event.seq, "epoch": pos.epoch, "delivered": event.seq},
        )
    worker.refresh_from_db()
    return worker


def do_reset_event_log(*, keep_events: bool = False) -> LogState:
    """Start a new epoch (e.g. after restoring a backup): every consumer resumes with
    ``recovered: false``. Events are deleted unless ``keep_events``."""
    import uuid

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
    """Delete events older than ``older_than`` (retention); consumers behind them get
    ``recovered: false``."""
    with transaction.atomic():
        state = LogState.objects.select_for_update().get_or_create(id=1)[0]
        doomed = Event.objects.filter(created_at__lt=older_than)
        last = doomed.order_by("-seq").values_list("seq", flat=True).first()
        if last is None:
            return 0
        count, _ = Event.objects.filter(seq__lte=last).delete()
        state.pruned_through = max(state.pruned_through, last)
        state.save(update_fields=["pruned_through"])
    return count
