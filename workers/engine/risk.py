"""The ``risk_pattern`` vocabulary Think and Analysis share: its subject and its levels.

Own module because Analysis states its view of risk on Think's subjects, and Think imports
Analysis's peers (Dream, Recall): putting these in either would make a cycle.
"""

from __future__ import annotations


def risk_subject(rule: str, churn: str | None) -> str:
    """The subject of a ``risk_pattern`` (Think's and Analysis's views share it)."""
    return f"rule:{rule}|churn:{churn or 'unknown'}"


def risk_level(score: float) -> str:
    """low < 0.25 <= medium < 0.5 <= high < 0.75 <= critical."""
    for level, floor in (("critical", 0.75), ("high", 0.5), ("medium", 0.25)):
        if score >= floor:
            return level
    return "low"
