"""Conflicts between knowledge items, their immutable resolution history, and source trust.

Writes go through ``conflicts.actions``; the rules about one row live here (the status
transition map of ``Conflict``, the effective trust of ``SourceTrust``).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from conflicts.choices import Actor, Classification, ConflictStatus, Decision, ItemRole
from conflicts.engine.candidates import Trust
from identity.models import Worker
from knowledge.models import KnowledgeItem, visible_item_q
from knowledge.visibility import Audience, audience_from_rows


class ConflictQuerySet(models.QuerySet):
    def unsettled(self) -> ConflictQuerySet:
        return self.filter(status__in=[ConflictStatus.OPEN, ConflictStatus.PENDING_REVIEW])

    def visible_to(self, worker: Worker | None) -> ConflictQuerySet:
        """Conflicts every item of which ``worker`` may see (``None``, a person: all).

        A conflict with one item the worker may not see is left out entirely: its subject,
        claims, proposal, history and existence (knowledge/visibility.py)."""
        if worker is None:
            return self
        hidden = ConflictItem.objects.filter(conflict=OuterRef("pk")).exclude(
            visible_item_q(worker, "item__")
        )
        return self.filter(~Exists(hidden))

    def involving_worker(self, name: str) -> ConflictQuerySet:
        return self.filter(
            pk__in=ConflictItem.objects.filter(item__source__name=name).values("conflict_id")
        )


def person_name(actor: str) -> str:
    """An actor as people read it: ``admin`` (not ``user:admin``), ``the engine``."""
    if actor.startswith("user:"):
        return actor.removeprefix("user:")
    return {"engine": "the engine", "system": "the system"}.get(actor, actor)


class Conflict(models.Model):
    """Competing items about one (knowledge type, subject).

    At most one unsettled (open / pending_review) conflict per (type, subject, classification)
    among detected conflicts (a partial unique constraint; flagged ones are exempt). The
    engine's proposal (``proposal``, ``proposed_claim``, ``margin``) is kept apart from the
    decision actually taken (``decision``, ``decided_claim``, ``decided_by``), so the engine's
    precision against people is measurable. ``version`` increases exactly when what a
    reviewer sees changes (``reviewer_view``: the status, the proposed claim, the items
    taking part and their claims), never for a refresh of an item that changes only its
    confidence or freshness (nor the margin, probability or trust they move), nor for a
    review request: clients send it back when resolving and get 409 only if the conflict
    changed in a way they could see. Every change of it is announced by an event carrying
    the new state (docs/api.md, "Conflict events").
    """

    #: Allowed status changes (Oscar's ``Order.set_status`` pattern).
    TRANSITIONS: dict[str, tuple[str, ...]] = {
        ConflictStatus.OPEN: (
            ConflictStatus.PENDING_REVIEW,
            ConflictStatus.AUTO_RESOLVED,
            ConflictStatus.RESOLVED,
            ConflictStatus.DISMISSED,
        ),
        ConflictStatus.PENDING_REVIEW: (
            ConflictStatus.AUTO_RESOLVED,
            ConflictStatus.RESOLVED,
            ConflictStatus.DISMISSED,
        ),
        ConflictStatus.AUTO_RESOLVED: (),
        ConflictStatus.RESOLVED: (),
        ConflictStatus.DISMISSED: (),
    }

    knowledge_type = models.CharField(max_length=64)
    subject = models.CharField(max_length=255)
    classification = models.CharField(max_length=24, choices=Classification.choices)
    status = models.CharField(
        max_length=16, choices=ConflictStatus.choices, default=ConflictStatus.OPEN
    )
    items = models.ManyToManyField(KnowledgeItem, through="ConflictItem", related_name="conflicts")

    # The engine's latest proposal (Proposal.to_dict()), its strategy and margin.
    strategy = models.CharField(max_length=32, blank=True)
    proposal = models.JSONField(default=dict, blank=True)
    proposed_claim = models.CharField(max_length=255, blank=True)
    margin = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)

    # The decision actually taken.
    decision = models.CharField(max_length=16, choices=Decision.choices, blank=True)
    decided_claim = models.CharField(max_length=255, blank=True)
    decided_by = models.CharField(
        max_length=150, blank=True, help_text="engine, user:<name> or system"
    )
    decided_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True)

    # db_constraint=False on the FKs to workers and items written under the event log's tail
    # lock: see ConflictItem.item.
    flagged_by = models.ForeignKey(
        Worker,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_constraint=False,
        related_name="flagged_conflicts",
    )
    flag_reason = models.CharField(max_length=500, blank=True)
    review_requested_at = models.DateTimeField(null=True, blank=True)
    review_requests = models.PositiveIntegerField(default=0)

    opened_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)

    objects = ConflictQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["status", "-id"], name="conflict_status"),
            models.Index(fields=["knowledge_type", "subject", "status"], name="conflict_subject"),
            models.Index(fields=["opened_at"], name="conflict_opened"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["knowledge_type", "subject", "classification"],
                condition=Q(status__in=["open", "pending_review"]) & ~Q(classification="flagged"),
                name="conflict_one_unsettled_per_subject",
            ),
        ]

    def __str__(self) -> str:
        return f"conflict #{self.pk} {self.knowledge_type}: {self.subject} ({self.status})"

    def audience(self) -> Audience:
        """Who may see this conflict: the workers who may see all its items (None: all)."""
        return audience_from_rows(
            self.links.values_list("item__is_targeted", "item__source__name", "item__target_names")
        )

    @property
    def is_unsettled(self) -> bool:
        return self.status in (ConflictStatus.OPEN, ConflictStatus.PENDING_REVIEW)

    def reviewer_view(self) -> tuple:
        """What a reviewer decides on, as stored: the status, the proposed claim, and the
        items of the latest proposal with the claims they assert. Confidence, freshness,
        trust, margin and probability are live figures, left out on purpose (an item
        refreshed every few seconds must not invalidate a reviewer's ``version``)."""
        proposal = self.proposal or {}
        item_ids = [*proposal.get("winner_item_ids", ()), *proposal.get("loser_item_ids", ())]
        return (
            self.status,
            self.proposed_claim,
            tuple(sorted(item_ids, key=str)),
            tuple(sorted(proposal.get("scores") or ())),
        )

    #: A margin below this is a tie: the engine has no proposal worth showing.
    TIE_MARGIN = 0.001

    @property
    def has_proposal(self) -> bool:
        """The engine prefers one claim (not a tie at margin 0.000)."""
        return bool(self.proposed_claim) and (self.margin or 0) >= self.TIE_MARGIN

    @property
    def decided_by_name(self) -> str:
        return person_name(self.decided_by)

    def can_transition(self, new_status: str) -> bool:
        return new_status == self.status or new_status in self.TRANSITIONS[self.status]

    def set_status(self, new_status: str) -> None:
        """Move to ``new_status`` if the map allows it (the caller saves)."""
        if not self.can_transition(new_status):
            raise ValidationError(f"a conflict cannot go from {self.status} to {new_status}")
        self.status = new_status
        self.updated_at = timezone.now()
        self.version += 1
        if new_status not in (ConflictStatus.OPEN, ConflictStatus.PENDING_REVIEW):
            self.resolved_at = self.updated_at


class ConflictItem(models.Model):
    """An item taking part in a conflict, with its role and (once decided) whether it won."""

    conflict = models.ForeignKey(Conflict, on_delete=models.CASCADE, related_name="links")
    # No database FK constraint: on PostgreSQL inserting a row that references an item takes
    # a KEY SHARE lock on it, which waits for a broadcast or validation holding that item
    # FOR UPDATE while it waits for the event log's tail lock, which the inserter holds: a
    # deadlock. Items are never deleted (PROTECT still guards ORM deletes; Django emulates
    # on_delete itself).
    item = models.ForeignKey(
        KnowledgeItem,
        on_delete=models.PROTECT,
        db_constraint=False,
        related_name="conflict_links",
    )
    role = models.CharField(max_length=16, choices=ItemRole.choices)
    won = models.BooleanField(null=True, blank=True)
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["conflict", "item"], name="conflict_item_unique")
        ]
        indexes = [models.Index(fields=["item", "conflict"], name="conflict_item_item")]

    def __str__(self) -> str:
        return f"item {self.item_id} in conflict {self.conflict_id} ({self.role})"


class Resolution(models.Model):
    """One immutable row per decision on a conflict: what was decided, by whom, on what inputs.

    ``inputs`` holds every candidate as the strategy saw it (confidence, freshness, trust,
    independence); ``proposal`` the engine's proposal at that moment, even when a person
    decided otherwise.
    """

    conflict = models.ForeignKey(Conflict, on_delete=models.PROTECT, related_name="resolutions")
    strategy = models.CharField(max_length=32)
    decision = models.CharField(max_length=16, choices=Decision.choices)
    actor = models.CharField(max_length=8, choices=Actor.choices)
    actor_name = models.CharField(max_length=150)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    winner_claim = models.CharField(max_length=255, blank=True)
    winner_item_ids = models.JSONField(default=list)
    superseded_item_ids = models.JSONField(default=list)
    proposal = models.JSONField(default=dict)
    proposal_agreed = models.BooleanField(
        null=True, help_text="The engine proposed the decided claim"
    )
    inputs = models.JSONField(default=list)
    trust_updates = models.JSONField(default=list)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["-created_at"], name="resolution_created")]

    def __str__(self) -> str:
        return f"resolution #{self.pk} of conflict {self.conflict_id}: {self.decision}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.pop("_allow_update", False):
            raise ValidationError("resolution history rows are immutable")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("resolution history rows are immutable")

    @property
    def actor_display(self) -> str:
        return person_name(self.actor_name)


class SourceTrust(models.Model):
    """Learned trust of one worker for one knowledge type: Beta(alpha, beta).

    ``pinned`` (per type) and ``Worker.trust_pin`` (all types, wins over ``pinned``) override
    the learned mean; learning continues underneath.
    """

    # No DB constraint (see ConflictItem.item): do_validate locks the item's source row
    # FOR UPDATE before it waits for the tail lock that trust updates run under.
    worker = models.ForeignKey(
        Worker, on_delete=models.CASCADE, db_constraint=False, related_name="trust"
    )
    knowledge_type = models.CharField(max_length=64)
    alpha = models.FloatField(default=2.0)
    beta = models.FloatField(default=2.0)
    pinned = models.FloatField(null=True, blank=True, help_text="Pinned trust 0..1 for this type.")
    spread = models.FloatField(
        null=True,
        blank=True,
        help_text="Learned error spread (>= 2): claims the source's wrong reports spread over.",
    )
    wins = models.PositiveIntegerField(default=0)
    losses = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["worker__name", "knowledge_type"]
        constraints = [
            models.UniqueConstraint(fields=["worker", "knowledge_type"], name="trust_unique"),
            models.CheckConstraint(condition=Q(alpha__gt=0) & Q(beta__gt=0), name="trust_positive"),
        ]

    def __str__(self) -> str:
        return f"trust of {self.worker_id} for {self.knowledge_type}: {self.mean:.3f}"

    def as_trust(self, worker_pin: float | None = None) -> Trust:
        pin = worker_pin if worker_pin is not None else self.pinned
        return Trust(alpha=self.alpha, beta=self.beta, pinned=pin, spread=self.spread)

    @property
    def mean(self) -> float:
        return self.as_trust(getattr(self.worker, "trust_pin", None)).mean
