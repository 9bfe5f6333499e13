"""Conflict detection and resolution actions.

The core calls ``detect_conflicts(item, outcome)`` inside the broadcast transaction.
"""

from __future__ import annotations


def detect_conflicts(item, outcome: str) -> list[int]:
    """Detect conflicts raised by ``item``; return the ids of the conflicts it raised.

    Placeholder until conflict detection lands (issue 4): no conflicts are detected.
    """
    return []
