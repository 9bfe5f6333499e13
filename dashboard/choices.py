"""Enums of the dashboard app."""

from django.db import models


class AlertLevel(models.TextChoices):
    WARNING = "warning", "warning"
    CRITICAL = "critical", "critical"


class AlertState(models.TextChoices):
    OK = "ok", "ok"
    PENDING = "pending", "pending"
    FIRING = "firing", "firing"
    RESOLVED = "resolved", "resolved"
