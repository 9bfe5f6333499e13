"""Alert rules with their persisted state, and the history of their state changes.

Only the alert checker (``manage.py check_alerts``) writes these rows; pages and ``/metrics``
read them. A rule's thresholds are edited in the admin (seeded with the original plan's
defaults by migration 0002).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from dashboard.choices import AlertLevel, AlertState


class AlertRule(models.Model):
    """One alert rule: its configuration (admin-editable) and its current state.

    States move ``ok → pending → firing → resolved → pending …`` (``pending → ok`` when the
    breach clears before ``for_seconds``); every move is an ``AlertFlip`` row. A measurement
    with fewer than ``min_samples`` samples never breaches (one slow request after a restart
    is not a latency problem).
    """

    TRANSITIONS = {
        AlertState.OK: {AlertState.PENDING},
        AlertState.PENDING: {AlertState.FIRING, AlertState.OK},
        AlertState.FIRING: {AlertState.RESOLVED},
        AlertState.RESOLVED: {AlertState.PENDING},
    }

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=300, blank=True)
    level = models.CharField(max_length=8, choices=AlertLevel.choices, default=AlertLevel.WARNING)
    threshold = models.FloatField()
    unit = models.CharField(max_length=16, blank=True)
    min_samples = models.PositiveIntegerField(
        default=1, help_text="fewer samples than this in the window never breach"
    )
    for_seconds = models.PositiveIntegerField(
        default=60, help_text="how long a breach stays pending before the rule fires"
    )
    enabled = models.BooleanField(default=True)

    # Written by the checker only.
    state = models.CharField(max_length=8, choices=AlertState.choices, default=AlertState.OK)
    state_since = models.DateTimeField(default=timezone.now)
    value = models.FloatField(null=True, blank=True)
    samples = models.PositiveIntegerField(null=True, blank=True)
    message = models.CharField(max_length=500, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)

    CONFIG_FIELDS = [
        "description",
        "level",
        "threshold",
        "unit",
        "min_samples",
        "for_seconds",
        "enabled",
    ]
    STATE_FIELDS = ["state", "state_since", "value", "samples", "message", "checked_at"]

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def firing(self) -> bool:
        return self.state == AlertState.FIRING

    def can_transition(self, new_state: str) -> bool:
        return new_state in self.TRANSITIONS[AlertState(self.state)]


class AlertFlip(models.Model):
    """One state change of a rule, with the measurement that caused it (immutable)."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="flips")
    created_at = models.DateTimeField(default=timezone.now)
    old_state = models.CharField(max_length=8, choices=AlertState.choices)
    new_state = models.CharField(max_length=8, choices=AlertState.choices)
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField()
    samples = models.PositiveIntegerField(null=True, blank=True)
    message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["-created_at"], name="alertflip_created")]

    def __str__(self) -> str:
        return f"{self.rule_id}: {self.old_state} → {self.new_state}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValidationError("alert flips are immutable")
        super().save(*args, **kwargs)
