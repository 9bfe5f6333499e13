"""Source trust per (worker, knowledge type): a Beta posterior learned from resolutions.

Pure functions on the immutable ``candidates.Trust`` value; the integrator stores alpha, beta
and pinned per (worker, type) row and calls these to compute the new values.

* Prior: Beta(``prior_alpha``, ``prior_beta``) = Beta(2, 2), mean 0.5, as weak as two wins and
  two losses: a new source is neither trusted nor distrusted.
* Each resolution is one observation per participating source: ``won`` if its claim won.
  Human decisions weigh ``human_weight`` (3.0), automatic ones ``auto_weight`` (1.0): a
  person's verdict is better evidence, and automatic resolutions must not reinforce the
  engine's own mistakes as fast as people correct them.
* Stale losers: a losing item observed well before the winning evidence may simply be out
  of date (the world changed), not wrong. With ``stale_loser_discount`` its loss weighs
  ``freshness(loser) / freshness(newest winner)`` of a full loss (in 0..1).
* Forgetting: with ``max_evidence`` set, alpha and beta are scaled down together whenever
  their sum would exceed it, so a source that degrades is noticed within about
  ``max_evidence`` outcomes instead of never.
* Pinned trust (an admin's override) is what ``Trust.mean`` returns; updates keep learning
  alpha/beta underneath so unpinning restores a current learned value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from .candidates import Candidate, Trust, check_unit

Actor = Literal["auto", "human"]


@dataclass(frozen=True, slots=True)
class TrustParams:
    """Parameters of trust learning; defaults are the ones the bench was tuned with."""

    prior_alpha: float = 2.0
    prior_beta: float = 2.0
    auto_weight: float = 1.0
    human_weight: float = 3.0
    max_evidence: float | None = 200.0
    stale_loser_discount: bool = True

    def weight_for(self, actor: Actor) -> float:
        """Weight of one outcome decided by ``actor`` ('auto' or 'human')."""
        if actor == "human":
            return self.human_weight
        if actor == "auto":
            return self.auto_weight
        raise ValueError(f"unknown actor {actor!r}")


DEFAULT_PARAMS = TrustParams()


def prior(params: TrustParams = DEFAULT_PARAMS) -> Trust:
    """The trust of a source never seen in a resolution."""
    return Trust(alpha=params.prior_alpha, beta=params.prior_beta)


def update(
    trust: Trust, won: bool, weight: float = 1.0, *, max_evidence: float | None = None
) -> Trust:
    """Trust after one outcome: ``weight`` added to alpha (won) or beta (lost).

    ``weight`` must be >= 0 (0 leaves the trust unchanged). With ``max_evidence``, alpha and
    beta are rescaled proportionally so their sum does not exceed it (exponential
    forgetting; the mean is preserved by the rescale). A pin is kept.
    """
    if weight < 0:
        raise ValueError("weight must be >= 0")
    alpha = trust.alpha + (weight if won else 0.0)
    beta = trust.beta + (0.0 if won else weight)
    if max_evidence is not None and alpha + beta > max_evidence:
        scale = max_evidence / (alpha + beta)
        alpha, beta = alpha * scale, beta * scale
    return replace(trust, alpha=alpha, beta=beta)


def pin(trust: Trust, value: float) -> Trust:
    """Pin the trust to ``value`` (0..1); learning continues underneath."""
    return replace(trust, pinned=check_unit("pinned trust", value))


def unpin(trust: Trust) -> Trust:
    return replace(trust, pinned=None)


@dataclass(frozen=True, slots=True)
class TrustUpdate:
    """One outcome to apply to ``source``'s trust for the conflict's knowledge type."""

    source: str
    won: bool
    weight: float


def resolution_updates(
    candidates: Sequence[Candidate],
    winner_claim: str | None,
    actor: Actor,
    params: TrustParams = DEFAULT_PARAMS,
) -> list[TrustUpdate]:
    """The trust outcomes implied by resolving a conflict in favour of ``winner_claim``.

    One update per distinct source (a source counts once even with several items). Sources
    asserting ``winner_claim`` won; the others lost. ``winner_claim=None`` means a reviewer
    rejected every claim: every source lost. Loss weights are discounted for stale losers as
    described in the module docstring. Output order follows first appearance of the source.
    """
    weight = params.weight_for(actor)
    newest_winner = max((c.freshness for c in candidates if c.claim == winner_claim), default=0.0)
    by_source: dict[str, TrustUpdate] = {}
    for cand in candidates:
        won = cand.claim == winner_claim
        w = weight
        if not won and params.stale_loser_discount and newest_winner > 0:
            w = weight * min(1.0, cand.freshness / newest_winner)
        previous = by_source.get(cand.source)
        if previous is None or (won and not previous.won):
            by_source[cand.source] = TrustUpdate(cand.source, won, w)
    return list(by_source.values())


def apply_updates(
    trusts: Mapping[str, Trust],
    updates: Iterable[TrustUpdate],
    params: TrustParams = DEFAULT_PARAMS,
) -> dict[str, Trust]:
    """New trust per source after ``updates``; sources missing from ``trusts`` start at the
    prior. Returns only the changed entries (keyed by source); the input is not modified."""
    changed: dict[str, Trust] = {}
    for upd in updates:
        current = changed.get(upd.source) or trusts.get(upd.source) or prior(params)
        changed[upd.source] = update(current, upd.won, upd.weight, max_evidence=params.max_evidence)
    return changed
