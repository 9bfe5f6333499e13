"""Writes of the dashboard app."""

from __future__ import annotations

from django.db import transaction

from dashboard.alerts import Alert
from knowledge.choices import EventKind
from knowledge.events import publish_event


def do_announce_alert(alert: Alert) -> int:
    """Publish ``alert_fired`` for an alert that started (``firing``) or stopped firing.
    Returns the event's seq."""
    with transaction.atomic():
        event = publish_event(
            EventKind.ALERT_FIRED,
            {**alert.as_dict(), "state": "firing" if alert.firing else "resolved"},
            source="alerts",
        )
    return event.seq
