"""Value types of the conflict engine: ``Trust``, ``Candidate`` and ``Proposal``.

Pure Python (no Django). The integrator builds one ``Candidate`` per active item taking part
in a conflict and hands the list to a strategy (``strategies.get_strategy(name).propose``);
the strategy answers with a ``Proposal``. Everything here is immutable.

Contracts
---------
* ``Candidate.confidence``, ``freshness`` and ``independence`` are in 0..1 (checked).
* ``Candidate.observed_at`` is an epoch float or a ``datetime`` (naive = UTC); only its order
  matters to the strategies (tie-break), ages enter through ``freshness``.
* ``Proposal.margin`` is in 0..1: how sure the strategy is of its winner. ``0.0`` means a tie.
  Ties are broken deterministically (see ``tie_break_key``) so the same input always gives the
  same winner.
* ``Proposal.inputs`` is JSON-serialisable (``json.dumps`` works): it is meant to be stored as
  is in the immutable resolution history row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ItemId = int | str
Timestamp = float | int | datetime

#: Two scores closer than this are equal (a tie).
TIE_EPSILON = 1e-9


def to_epoch(value: Timestamp) -> float:
    """Epoch seconds of ``value``; a naive ``datetime`` is taken as UTC."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)


def check_unit(name: str, value: float) -> float:
    value = float(value)
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise ValueError(f"{name} must be within 0..1, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Trust:
    """Trust in one source for one knowledge type: a Beta(alpha, beta) posterior.

    ``alpha`` counts (weighted) won resolutions plus the prior, ``beta`` lost ones. ``pinned``
    (0..1), when set by an admin, overrides the learned value: ``mean`` returns it, while
    learning goes on underneath so that unpinning restores an up-to-date learned value.
    ``spread`` (>= 2, None = not learned yet) is the source's learned error model: the number
    of claims its wrong reports behave as if spread evenly over (``truth.estimate_trust``:
    1 + 1 / how often its wrong reports agree with other sources' wrong reports). A source
    whose errors are scattered has a large spread, so two such sources agreeing is strong
    evidence; a source whose errors coincide with others' (a shared decoy) has spread 2.
    """

    alpha: float = 2.0
    beta: float = 2.0
    pinned: float | None = None
    spread: float | None = None

    def __post_init__(self) -> None:
        if not (self.alpha > 0 and self.beta > 0):
            raise ValueError("Trust alpha and beta must be > 0")
        if self.spread is not None and not self.spread >= 2.0:
            raise ValueError("Trust spread must be >= 2")
        if self.pinned is not None:
            check_unit("pinned trust", self.pinned)

    @property
    def learned_mean(self) -> float:
        """Posterior mean of the learned Beta, ignoring any pin."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def mean(self) -> float:
        """The trust the strategies use: the pinned value if set, else the posterior mean."""
        return self.pinned if self.pinned is not None else self.learned_mean

    @property
    def evidence(self) -> float:
        """alpha + beta: prior plus weighted outcomes seen."""
        return self.alpha + self.beta

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": round(self.alpha, 6),
            "beta": round(self.beta, 6),
            "pinned": self.pinned,
            "mean": round(self.mean, 6),
            "spread": None if self.spread is None else round(self.spread, 6),
        }


def _json_id(item_id: ItemId) -> int | str:
    return item_id if isinstance(item_id, (int, str)) else str(item_id)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One active item taking part in a conflict, with what the strategies may look at.

    ``claim`` must already be normalised (the registry's ``claim_of``). ``independence``
    (0..1) is how much this source's vote counts on its own: 1.0 for an independent source,
    less for a source suspected of copying another candidate's claim (see
    ``independence.CopyEstimator``). ``knowledge_type`` and ``subject`` are optional for the
    strategies (hybrid uses the type to pick per-type weights) and used by ``detection``.
    """

    item_id: ItemId
    source: str
    claim: str
    confidence: float
    freshness: float
    observed_at: Timestamp = 0.0
    trust: Trust = field(default_factory=Trust)
    independence: float = 1.0
    knowledge_type: str = ""
    subject: str = ""

    def __post_init__(self) -> None:
        check_unit("confidence", self.confidence)
        check_unit("freshness", self.freshness)
        check_unit("independence", self.independence)

    @property
    def observed_ts(self) -> float:
        return to_epoch(self.observed_at)

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable record of everything a strategy may have used."""
        return {
            "item_id": _json_id(self.item_id),
            "source": self.source,
            "claim": self.claim,
            "confidence": round(self.confidence, 6),
            "freshness": round(self.freshness, 6),
            "observed_at": self.observed_ts,
            "trust": self.trust.to_dict(),
            "independence": round(self.independence, 6),
        }


@dataclass(frozen=True, slots=True)
class Proposal:
    """A strategy's proposed resolution of one conflict.

    ``winner_item_ids`` are the candidates asserting ``winner_claim`` (they stay active),
    ``loser_item_ids`` all the others (they would be superseded). ``scores`` maps every claim
    to the strategy's score (larger is better; units depend on the strategy, see
    ``strategies``). ``margin`` in 0..1, 0.0 exactly when the two best claims tie, 1.0 when
    there is only one claim. ``inputs`` is the JSON-serialisable snapshot for the history.
    """

    strategy: str
    winner_claim: str
    winner_item_ids: tuple[ItemId, ...]
    loser_item_ids: tuple[ItemId, ...]
    margin: float
    scores: Mapping[str, float]
    inputs: Mapping[str, Any]

    @property
    def is_tie(self) -> bool:
        return self.margin <= TIE_EPSILON

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "winner_claim": self.winner_claim,
            "winner_item_ids": [_json_id(i) for i in self.winner_item_ids],
            "loser_item_ids": [_json_id(i) for i in self.loser_item_ids],
            "margin": round(self.margin, 6),
            "tie": self.is_tie,
            "scores": {k: round(v, 6) for k, v in self.scores.items()},
            "inputs": dict(self.inputs),
        }


def tie_break_key(claim: str, candidates: Iterable[Candidate]) -> tuple[float, float, str]:
    """Sort key (ascending = preferred) among claims whose scores are equal.

    The documented tie-break: (1) the claim with the most recent supporting observation
    (largest ``observed_at``) wins, then (2) the one with the highest single confidence among
    its supporters, then (3) the claim string in ascending order. Deterministic for any input.
    """
    supporters = [c for c in candidates if c.claim == claim]
    latest = max((c.observed_ts for c in supporters), default=-math.inf)
    best_confidence = max((c.confidence for c in supporters), default=0.0)
    return (-latest, -best_confidence, claim)


def rank_claims(scores: Mapping[str, float], candidates: Sequence[Candidate]) -> list[str]:
    """Claims best first: by score; claims within ``TIE_EPSILON`` of the best remaining score
    are ordered among themselves by ``tie_break_key``."""
    remaining = sorted(scores, key=lambda c: (-scores[c], tie_break_key(c, candidates)))
    ranked: list[str] = []
    while remaining:
        best = scores[remaining[0]]
        tied = [c for c in remaining if best - scores[c] <= TIE_EPSILON]
        tied.sort(key=lambda c: tie_break_key(c, candidates))
        ranked.extend(tied)
        remaining = [c for c in remaining if c not in tied]
    return ranked
