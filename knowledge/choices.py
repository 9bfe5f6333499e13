from django.db import models


class Urgency(models.IntegerChoices):
    LOW = 1, "low"
    NORMAL = 2, "normal"
    HIGH = 3, "high"
    CRITICAL = 4, "critical"

    @classmethod
    def from_label(cls, label: str) -> "Urgency":
        try:
            return _URGENCY_BY_LABEL[label]
        except (KeyError, TypeError):
            raise ValueError(label) from None

    @classmethod
    def labels_list(cls) -> list[str]:
        return [m.label for m in cls]


_URGENCY_BY_LABEL = {member.label: member for member in Urgency}


class ItemStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUPERSEDED = "superseded", "Superseded"
    RETRACTED = "retracted", "Retracted"


class ValidationStatus(models.TextChoices):
    UNVALIDATED = "unvalidated", "Unvalidated"
    CONFIRMED = "confirmed", "Confirmed"
    DISPUTED = "disputed", "Disputed"


class Verdict(models.TextChoices):
    CONFIRMED = "confirmed", "Confirmed"
    DISPUTED = "disputed", "Disputed"


class EventKind(models.TextChoices):
    KNOWLEDGE_BROADCAST = "knowledge_broadcast"
    KNOWLEDGE_VALIDATED = "knowledge_validated"
    CONFLICT_DETECTED = "conflict_detected"
    CONFLICT_UPDATED = "conflict_updated"
    KNOWLEDGE_RESOLVED = "knowledge_resolved"
    WORKER_STATE_CLEARED = "worker_state_cleared"
    ALERT_FIRED = "alert_fired"
