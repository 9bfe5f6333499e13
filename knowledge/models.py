from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta
from operator import attrgetter

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from identity.models import Worker
from knowledge.choices import EventKind, ItemStatus, Urgency, ValidationStatus, Verdict
from knowledge.registry import DEFAULT_DECAY_SECONDS, registry
from knowledge.scopes import read_types


class KnowledgeItemQuerySet(models.QuerySet):
    def active(self) -> KnowledgeItemQuerySet:
        return self.filter(status=ItemStatus.ACTIVE)

    def fresh(
        self, min_freshness: float, types: list[str] | None = None, now: datetime | None = None
    ):
        """Items whose freshness is at least ``min_freshness``.

        Freshness is exp(-age/decay(type)), so the condition is age <= -ln(f) * decay(type):
        one index-friendly range on ``observed_at`` per type, OR-ed together.
        """
        if min_freshness <= 0:
            return self
        now = now or timezone.now()
        names = types or registry.names()
        cond = Q()
        for name, max_age in registry.max_ages(names, min_freshness).items():
            cond |= Q(knowledge_type=name, observed_at__gte=now - _seconds(max_age))
        return self.filter(cond) if cond else self.none()

    def visible_to(self, worker: Worker) -> KnowledgeItemQuerySet:
        """What a worker may see: untargeted items, items targeted at it, its own items."""
        return self.filter(visible_item_q(worker))


def visible_item_q(worker: Worker, prefix: str = "") -> Q:
    """The one rule of what a worker may see, as a condition on an item reached through
    ``prefix`` (``"item__"`` from a row linking to an item): its own items, items targeted at
    it, and untargeted items of the types its read scope allows. Every read path uses it:
    items, query, conflicts (``conflicts.visibility``), statistics; events carry the same
    audience in ``Event.targets``. docs/security.md."""
    return visible_unaddressed_q(worker, read_types(worker), prefix) | Q(
        **{f"{prefix}pk__in": KnowledgeTarget.objects.filter(worker=worker).values("item_id")}
    )


def visible_unaddressed_q(worker: Worker, readable: frozenset[str] | None, prefix: str = "") -> Q:
    """The part of ``visible_item_q`` that does not depend on an item's target links: its
    own items and the untargeted items of ``readable`` (``read_types(worker)``)."""
    public = Q(**{f"{prefix}is_targeted": False})
    if readable is not None:
        public &= Q(**{f"{prefix}knowledge_type__in": sorted(readable)})
    return public | Q(**{f"{prefix}source": worker})


def visible_unaddressed(
    worker: Worker,
    readable: frozenset[str] | None,
    knowledge_type: str,
    source_id: int,
    is_targeted: bool,
) -> bool:
    """``visible_unaddressed_q`` as a test on an item's (or a group of items') columns, for
    counts grouped by them (knowledge/stats.py). The two agree:
    knowledge/tests/test_stats_counts.py."""
    if source_id == worker.pk:
        return True
    return not is_targeted and (readable is None or knowledge_type in readable)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=min(value, 3650 * 86400))


class KnowledgeItem(models.Model):
    """One piece of knowledge broadcast by a worker.

    ``subject`` and ``claim`` are derived from the payload by the type registry. ``subject`` is
    the normalised form (lowercase, whitespace collapsed) that every match uses (refresh,
    conflict detection, the ``subject`` filter); ``subject_text`` keeps the case it was sent
    in, and is what clients are shown as ``subject`` (items stored before it existed show the
    normalised form). Freshness is never stored: it is computed from ``observed_at`` and the
    type's decay at read time.
    Items are never deleted by the product: losers of a conflict are ``superseded``.
    """

    knowledge_type = models.CharField(max_length=64)
    # No index of its own: ``ki_source_type_ts`` and ``ki_source_urg_type_ts`` lead with it
    # (one index less to write per item: docs/performance.md, "Bulk ingest at 1M").
    source = models.ForeignKey(
        Worker, on_delete=models.PROTECT, related_name="items", db_index=False
    )
    subject = models.CharField(max_length=255)
    # ``db_default`` too: rows written outside the ORM (the bench's COPY seeding, a restore of
    # an older dump) get "" rather than failing NOT NULL.
    subject_text = models.CharField(
        max_length=255,
        blank=True,
        default="",
        db_default="",
        help_text="the subject as sent (case kept)",
    )
    claim = models.CharField(max_length=255)
    payload = models.JSONField()
    confidence = models.FloatField()
    urgency = models.PositiveSmallIntegerField(choices=Urgency.choices, default=Urgency.NORMAL)
    is_targeted = models.BooleanField(default=False)
    target_names = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=ItemStatus.choices, default=ItemStatus.ACTIVE)
    validation_status = models.CharField(
        max_length=16, choices=ValidationStatus.choices, default=ValidationStatus.UNVALIDATED
    )
    # Indexed only where set (``ki_superseded_by``, partial): a new item, NULL here, writes
    # no entry.
    superseded_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="supersedes",
        db_index=False,
    )
    created_at = models.DateTimeField(default=timezone.now)
    observed_at = models.DateTimeField(default=timezone.now)
    # observed_at as epoch seconds: lets SQL order by freshness across types with different decay.
    observed_ts = models.FloatField(default=0.0)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    refresh_count = models.PositiveIntegerField(default=0)

    objects = KnowledgeItemQuerySet.as_manager()

    class Meta:
        ordering = ["-observed_at", "-id"]
        indexes = [
            # Query patterns (docs/performance.md): one type by freshness, and the per-type
            # branches of freshness order across types; the same per source.
            models.Index(
                fields=["knowledge_type", "status", "-observed_ts", "-id"], name="ki_type_status_ts"
            ),
            models.Index(
                fields=["source", "knowledge_type", "status", "-observed_ts", "-id"],
                name="ki_source_type_ts",
            ),
            # sources + one urgency (the bench's Q3): without urgency in the key the
            # branch read ~4.5 index entries per row it returned.
            models.Index(
                fields=["source", "urgency", "knowledge_type", "status", "-observed_ts", "-id"],
                name="ki_source_urg_type_ts",
            ),
            models.Index(fields=["status", "-observed_at"], name="ki_status_obs"),
            models.Index(fields=["knowledge_type", "subject", "status"], name="ki_type_subject"),
            models.Index(fields=["-created_at"], name="ki_created"),
            models.Index(
                fields=["superseded_by"],
                name="ki_superseded_by",
                condition=Q(superseded_by__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence__gte=0) & Q(confidence__lte=1), name="ki_confidence_0_1"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.knowledge_type}#{self.pk} {self.subject} = {self.claim}"

    @property
    def urgency_label(self) -> str:
        return Urgency(self.urgency).label

    def freshness(self, now: datetime | None = None) -> float:
        now = now or timezone.now()
        return _freshness(self.knowledge_type, (now - self.observed_at).total_seconds())

    def as_dict(self, now: datetime | None = None) -> dict:
        """The item as every API, inbox and event shows it (``source`` must be loaded)."""
        return item_dict(_item_values(self), now or timezone.now())


# What an item's dict is built from (``item_dict``), in this order: the read paths that need
# only the dict load these columns as tuples instead of model instances (knowledge/query.py).
ITEM_COLUMNS = tuple(
    "id knowledge_type source__name subject subject_text claim payload confidence urgency "
    "target_names status validation_status superseded_by_id created_at observed_at "
    "refreshed_at refresh_count".split()
)
_item_values = attrgetter(*(column.replace("__", ".") for column in ITEM_COLUMNS))
_URGENCY_LABELS = {value: label for value, label in Urgency.choices}


def _freshness(knowledge_type: str, age_seconds: float) -> float:
    kt = registry.get(knowledge_type)
    if kt is None:
        return math.exp(-max(age_seconds, 0) / DEFAULT_DECAY_SECONDS)
    return kt.freshness(age_seconds)


def item_dict(row: tuple, now: datetime) -> dict:
    """An item as every API, inbox and event shows it, from its ``ITEM_COLUMNS`` values:
    ``KnowledgeItem.as_dict`` and the lean query path build it here, so both give the same
    bytes."""
    (
        pk,
        knowledge_type,
        source_name,
        subject,
        subject_text,
        claim,
        payload,
        confidence,
        urgency,
        target_names,
        status,
        validation_status,
        superseded_by_id,
        created_at,
        observed_at,
        refreshed_at,
        refresh_count,
    ) = row
    label = _URGENCY_LABELS.get(urgency)
    return {
        "id": pk,
        "knowledge_type": knowledge_type,
        "source": source_name,
        "subject": subject_text or subject,
        "claim": claim,
        "payload": payload,
        "confidence": confidence,
        "urgency": label if label is not None else Urgency(urgency).label,
        "targets": list(target_names),
        "status": status,
        "validation_status": validation_status,
        "superseded_by": superseded_by_id,
        "created_at": created_at.isoformat(),
        "observed_at": observed_at.isoformat(),
        "refreshed_at": refreshed_at.isoformat() if refreshed_at else None,
        "refresh_count": refresh_count,
        "freshness": round(_freshness(knowledge_type, (now - observed_at).total_seconds()), 6),
    }


class KnowledgeTarget(models.Model):
    """An item addressed to specific workers (for the 'targeted at me' filter)."""

    item = models.ForeignKey(KnowledgeItem, on_delete=models.CASCADE, related_name="target_links")
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="targeted_links")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "worker"], name="kt_unique")]
        indexes = [models.Index(fields=["worker", "item"], name="kt_worker_item")]

    def __str__(self) -> str:
        return f"item {self.item_id} -> worker {self.worker_id}"


class IdempotencyRecord(models.Model):
    """The first result of a broadcast made with an idempotency key, returned on retry."""

    # No index of its own: ``idem_unique`` (worker, key) leads with it, and is the index the
    # bulk's key lookup must use (with a worker-only index the planner scanned all of the
    # worker's records for a ``key = ANY(...)`` list).
    worker = models.ForeignKey(
        Worker, on_delete=models.CASCADE, related_name="idempotency_keys", db_index=False
    )
    key = models.CharField(max_length=100)
    request_hash = models.CharField(max_length=64)
    item = models.ForeignKey(KnowledgeItem, on_delete=models.CASCADE, related_name="+")
    outcome = models.CharField(max_length=16)
    conflict_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["worker", "key"], name="idem_unique")]

    def __str__(self) -> str:
        return f"{self.key} -> item {self.item_id}"


class ValidationRecord(models.Model):
    """A worker's (or person's) verdict on an item. One per validator and item."""

    item = models.ForeignKey(KnowledgeItem, on_delete=models.CASCADE, related_name="validations")
    validator = models.ForeignKey(
        Worker, null=True, blank=True, on_delete=models.CASCADE, related_name="validations"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "validator"],
                condition=Q(validator__isnull=False),
                name="validation_unique_worker",
            )
        ]

    def __str__(self) -> str:
        return f"{self.verdict} on item {self.item_id}"


class LogState(models.Model):
    """The event log's identity: ``epoch`` changes only when the log is reset or restored."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    epoch = models.UUIDField(default=uuid.uuid4)
    reset_at = models.DateTimeField(default=timezone.now)
    # Every event with seq <= pruned_through may have been deleted by retention.
    pruned_through = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"event log epoch {self.epoch}"

    @classmethod
    def current(cls) -> LogState:
        state, _ = cls.objects.get_or_create(id=1)
        return state


class Event(models.Model):
    """One entry of the durable, ordered event log.

    ``seq`` is the primary key; publishers serialise their commit so that seq order equals
    commit order, or readers stop below any seq still in flight (``event_ordering``; see
    knowledge/events.py). ``targets`` empty means visible to everyone.
    """

    seq = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    knowledge_type = models.CharField(max_length=64, blank=True)
    source = models.CharField(max_length=64, blank=True)
    item_id = models.BigIntegerField(null=True, blank=True)
    is_targeted = models.BooleanField(default=False)
    targets = models.JSONField(default=list, blank=True)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["created_at"], name="event_created")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind}"

    def visible_to(self, worker_name: str | None) -> bool:
        """A worker sees public events and those naming it; people (None) see all.

        ``is_targeted`` with no ``targets`` is an event for people only (a conflict whose
        items no single worker may all see)."""
        return worker_name is None or not self.is_targeted or worker_name in self.targets

    def as_message(self, epoch: str) -> dict:
        return {
            "type": "event",
            "seq": self.seq,
            "epoch": epoch,
            "event": self.kind,
            "created_at": self.created_at.isoformat(),
            "data": self.data,
        }


class InboxCursor(models.Model):
    """A worker's durable position in the event log, advanced by ack (at-least-once)."""

    worker = models.OneToOneField(
        Worker, on_delete=models.CASCADE, primary_key=True, related_name="cursor"
    )
    position = models.BigIntegerField(default=0)
    epoch = models.UUIDField(null=True, blank=True)
    delivered = models.PositiveBigIntegerField(default=0)
    acked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"inbox of worker {self.worker_id} at {self.position}"


class Subscription(models.Model):
    """A worker's standing filter for its inbox and live feed.

    Effective types = (the registry's interests of the worker + ``types``) - ``muted_types``.
    Empty ``sources`` / ``events`` mean all.
    """

    worker = models.OneToOneField(
        Worker, on_delete=models.CASCADE, primary_key=True, related_name="subscription"
    )
    types = models.JSONField(default=list, blank=True)
    muted_types = models.JSONField(default=list, blank=True)
    sources = models.JSONField(default=list, blank=True)
    events = models.JSONField(default=list, blank=True)
    min_urgency = models.PositiveSmallIntegerField(choices=Urgency.choices, default=Urgency.LOW)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"subscription of worker {self.worker_id}"

    def effective_types(self) -> set[str]:
        return (registry.interests_of(self.worker.name) | set(self.types)) - set(self.muted_types)
