"""Enums of the dashboard app."""

from django.db import models


class Series(models.TextChoices):
    """The per-minute series of ``dashboard.timeseries`` (docs/monitoring.md, "Time series")."""

    BROADCASTS = "broadcasts", "Broadcasts"
    RECEPTIONS = "receptions", "Receptions (inbox deliveries)"
    CONFLICTS_OPENED = "conflicts_opened", "Conflicts opened"
    CONFLICTS_AUTO_RESOLVED = "conflicts_auto_resolved", "Conflicts auto-resolved"
    CONFLICTS_DECIDED = "conflicts_decided", "Conflicts decided by a person"
    API_REQUESTS = "api_requests", "API requests"
    API_LATENCY_P50 = "api_latency_p50", "API latency P50 (ms)"
    API_LATENCY_P95 = "api_latency_p95", "API latency P95 (ms)"
    API_LATENCY_P99 = "api_latency_p99", "API latency P99 (ms)"
    LIVE_CONNECTIONS = "live_connections", "Live connections"
    FRESHNESS = "freshness", "Mean freshness of active items"


class AlertLevel(models.TextChoices):
    WARNING = "warning", "warning"
    CRITICAL = "critical", "critical"


class AlertState(models.TextChoices):
    OK = "ok", "ok"
    PENDING = "pending", "pending"
    FIRING = "firing", "firing"
    RESOLVED = "resolved", "resolved"
