from __future__ import annotations

from django.db import models
from django.utils import timezone

from dashboard.choices import Series


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
