from django.db import models


class Classification(models.TextChoices):
    CONTRADICTION = "contradiction", "Contradiction"
    CONFIDENCE_MISMATCH = "confidence_mismatch", "Confidence mismatch"
    FLAGGED = "flagged", "Flagged by a worker"


class ConflictStatus(models.TextChoices):
    OPEN = "open", "Open"
    AUTO_RESOLVED = "auto_resolved", "Auto-resolved"
    PENDING_REVIEW = "pending_review", "Pending review"
    RESOLVED = "resolved", "Resolved"
    DISMISSED = "dismissed", "Dismissed"


#: Statuses of a conflict nobody has settled yet (the review queue plus the settle window).
UNSETTLED = (ConflictStatus.OPEN, ConflictStatus.PENDING_REVIEW)


class Decision(models.TextChoices):
    """How a conflict was closed (stored on the conflict and in each history row)."""

    AUTO = "auto", "Applied the engine's proposal automatically"
    ACCEPT = "accept", "A person accepted the engine's proposal"
    PICK = "pick", "A person picked the winning item"
    REJECT = "reject", "A person rejected every claim"
    DISMISS = "dismiss", "A person dismissed the conflict (not a real conflict)"
    DISSOLVED = "dissolved", "Dissolved: the competing claims are no longer active"


class ItemRole(models.TextChoices):
    OPENER = "opener", "Opened the conflict"
    EXISTING = "existing", "Was active when the conflict opened"
    JOINED = "joined", "Joined later"
    FLAGGED = "flagged", "Flagged by a worker"


class Actor(models.TextChoices):
    AUTO = "auto", "Engine"
    HUMAN = "human", "Person"
    SYSTEM = "system", "System"
