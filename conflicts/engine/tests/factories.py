"""Small builders shared by the engine tests (plain functions, no fixtures magic)."""

from __future__ import annotations

from conflicts.engine.candidates import Candidate, Trust
from conflicts.engine.scenarios import BroadcastEvent, Scenario, ScenarioConfig

#: Trust of a source that has won most of its resolutions, and of one that has lost most.
TRUSTED = Trust(alpha=40.0, beta=4.0)
DISTRUSTED = Trust(alpha=4.0, beta=12.0)


def cand(
    item_id: int,
    source: str,
    claim: str,
    *,
    confidence: float = 0.8,
    freshness: float = 1.0,
    observed_at: float = 0.0,
    trust: Trust | None = None,
    independence: float = 1.0,
    knowledge_type: str = "risk_pattern",
    subject: str = "lazy-import",
) -> Candidate:
    return Candidate(
        item_id=item_id,
        source=source,
        claim=claim,
        confidence=confidence,
        freshness=freshness,
        observed_at=observed_at,
        trust=trust or Trust(),
        independence=independence,
        knowledge_type=knowledge_type,
        subject=subject,
    )


def event(
    index: int,
    source: str,
    claim: str,
    offset: float,
    *,
    subject: str = "s1",
    knowledge_type: str = "risk_pattern",
    confidence: float = 0.9,
    truth: str = "high",
) -> BroadcastEvent:
    return BroadcastEvent(
        index=index,
        knowledge_type=knowledge_type,
        subject=subject,
        claim=claim,
        source=source,
        confidence=confidence,
        offset=offset,
        payload={"pattern": subject, "risk_level": claim},
        truth_claim=truth,
        correct=claim == truth,
    )


def scenario(
    events: list[BroadcastEvent],
    truth: dict[tuple[str, str], tuple[tuple[float, str], ...]],
    *,
    warmup_end: float = 0.0,
    horizon: float = 30 * 86400.0,
) -> Scenario:
    """A hand-built scenario (events must be in arrival order with index = position)."""
    return Scenario(
        config=ScenarioConfig(),
        events=tuple(events),
        truth=truth,
        profiles=(),
        ambiguous=frozenset(),
        horizon=horizon,
        warmup_end=warmup_end,
    )
