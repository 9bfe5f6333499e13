"""The dashboard's rows: per-minute time series (``RollupPoint``, ``RollupState``) and alert
rules with their persisted state and the history of their changes (``AlertRule``,
``AlertFlip``). Only the alert checker (``manage.py check_alerts``) writes them; pages and
``/metrics`` read them. A rule's thresholds are edited in the admin (seeded with the original
plan's defaults by migration 0003).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from dashboard.choices import AlertLevel, AlertState, Series


class RollupPoint(models.Model):
    """One minute of one series, for one breakdown (docs/monitoring.md, "Time series").

    Written only by ``dashboard.timeseries.rollup`` (the alert checker), pruned after
    ``timeseries_retention_hours``. Counts (broadcasts, receptions, conflicts, API requests)
    are added to as events are rolled up; gauges (latency, connections) hold the minute's last
    sample; ``freshness`` holds a sum over ``samples`` items, so minutes and breakdowns merge
    exactly. ``worker`` is the broadcaster of a broadcast and the recipient of a reception,
    ``peer`` the broadcaster of what was received. ``targeted`` rows come from targeted or
    private events: people see them, worker tokens do not (docs/security.md).
    """

    minute = models.DateTimeField()
    series = models.CharField(max_length=32, choices=Series.choices)
    knowledge_type = models.CharField(max_length=64, blank=True, default="")
    worker = models.CharField(max_length=64, blank=True, default="")
    peer = models.CharField(max_length=64, blank=True, default="")
    targeted = models.BooleanField(default=False)
    value = models.FloatField(default=0.0)
    samples = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["minute", "series"]
        constraints = [
            models.UniqueConstraint(
                fields=["series", "minute", "knowledge_type", "worker", "peer", "targeted"],
                name="rollup_point_unique",
            )
        ]
        indexes = [models.Index(fields=["minute"], name="rollup_minute")]

    def __str__(self) -> str:
        return f"{self.series} {self.minute:%Y-%m-%d %H:%M} = {self.value}"

    @property
    def key(self) -> tuple:
        return (
            self.minute,
            self.series,
            self.knowledge_type,
            self.worker,
            self.peer,
            self.targeted,
        )


class RollupState(models.Model):
    """Where the rollup stands: the last event seq it counted (in ``epoch``), each worker's
    inbox delivery position it counted receptions up to, and the API latency histogram it
    last read (cumulative counts, to take differences)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    epoch = models.CharField(max_length=64, blank=True)
    last_seq = models.BigIntegerField(default=0)
    delivered = models.JSONField(default=dict, blank=True)
    latency = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"rollup at seq {self.last_seq}"


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
