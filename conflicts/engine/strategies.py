"""Resolution strategies: ``Strategy.propose(candidates) -> Proposal``.

Every strategy is a pure function of the candidates it is given (no clock, no database, no
ground truth). Shared contract (see ``candidates``):

* ``candidates`` must be non-empty with distinct ``item_id``; claims already normalised.
* One distinct claim: that claim wins with margin 1.0 (nothing to resolve).
* The two best claims scoring equally (within ``TIE_EPSILON``): margin 0.0 and the winner is
  chosen by ``candidates.tie_break_key`` (most recent supporting observation, then highest
  confidence, then claim string ascending).
* ``margin`` is in 0..1; ``scores`` has one entry per claim; ``inputs`` holds the strategy's
  name and parameters and every candidate's confidence, freshness, trust and independence.

The strategies and what their score and margin mean:

``majority``   count of distinct sources per claim; margin (n1 - n2) / n. The baseline.
``consensus``  sum over distinct sources of confidence x independence (a source counts once
               per claim, a suspected copy counts by its independence weight); margin
               (s1 - s2) / sum(s).
``recency``    the freshest item's claim wins; score = best freshness per claim, margin
               1 - f2 / f1 (the relative freshness gap, which does not change as both age).
``authority``  naive-Bayes posterior over claims, each source voting with reliability =
               its trust mean (pinned trust overrides), tempered by independence; margin
               p1 - p2 of the posterior.
``hybrid``     the same posterior, but each vote's reliability blends trust and confidence
               (per-type weights), and evidence is *forgotten* between observations in
               freshness order: before each newer observation the belief is pulled toward
               the prior by ``(f_old / f_new) ** forgetting`` (= exp(-dt / decay)). Many stale
               observations of a past state therefore do not outvote one fresh observation
               of a changed state, while near-simultaneous observations add up normally.
               Margin p1 - p2 of the posterior; this is the one the auto-resolve threshold is
               tuned for.

Register more with ``register``; look up with ``get_strategy(name, **options)``.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from .candidates import TIE_EPSILON, Candidate, Proposal, rank_claims

Extra = dict[str, Any]

#: Number of possible claims per knowledge type (the registry's enums; open vocabularies get a
#: larger guess). The posterior strategies use it when ``effective_claims`` is None.
DEFAULT_CLAIM_SPACES: dict[str, int] = {
    "risk_pattern": 4,
    "decision_outcome": 4,
    "issue_pattern": 3,
    "pattern_evolution": 3,
    "learned_pattern": 3,
    "proposal_quality": 3,
    "complexity_trend": 3,
    "knowledge_retrieval": 3,
    "successful_fix": 8,
    "context_enrichment": 8,
}
FALLBACK_CLAIM_SPACE = 3


def _checked(candidates: Sequence[Candidate]) -> list[Candidate]:
    cands = list(candidates)
    if not cands:
        raise ValueError("a proposal needs at least one candidate")
    ids = [c.item_id for c in cands]
    if len(set(ids)) != len(ids):
        raise ValueError("candidate item ids must be distinct")
    return cands


def _clamp01(value: float) -> float:
    return min(1.0, max(0.0, value))


class Strategy(ABC):
    """One way of picking a winning claim among conflicting candidates."""

    name: ClassVar[str]

    def propose(self, candidates: Sequence[Candidate]) -> Proposal:
        """Proposed winner, losers, margin and the input snapshot; see the module contract."""
        cands = _checked(candidates)
        scores, extra = self._score(cands)
        ranked = rank_claims(scores, cands)
        if len(ranked) == 1:
            margin = 1.0
        elif scores[ranked[0]] - scores[ranked[1]] <= TIE_EPSILON:
            margin = 0.0
        else:
            margin = _clamp01(self._margin(scores, ranked, extra))
        winner = ranked[0]
        inputs: dict[str, Any] = {
            "strategy": self.name,
            "params": self.params(),
            "candidates": [c.snapshot() for c in cands],
        }
        inputs.update(extra)
        return Proposal(
            strategy=self.name,
            winner_claim=winner,
            winner_item_ids=tuple(c.item_id for c in cands if c.claim == winner),
            loser_item_ids=tuple(c.item_id for c in cands if c.claim != winner),
            margin=margin,
            scores={claim: scores[claim] for claim in ranked},
            inputs=inputs,
        )

    def params(self) -> dict[str, Any]:
        """The strategy's parameters, recorded in ``Proposal.inputs``."""
        return {}

    @abstractmethod
    def _score(self, cands: list[Candidate]) -> tuple[dict[str, float], Extra]:
        """Score per claim (larger is better) and extra JSON-able inputs to record."""

    def _margin(self, scores: Mapping[str, float], ranked: list[str], extra: Extra) -> float:
        """Default margin: the gap between the two best scores as a share of all scores."""
        total = sum(scores.values())
        if total <= 0:
            return 0.0
        return (scores[ranked[0]] - scores[ranked[1]]) / total


class MajorityVoteStrategy(Strategy):
    """Plain count of distinct sources per claim (the baseline)."""

    name = "majority"

    def _score(self, cands: list[Candidate]) -> tuple[dict[str, float], Extra]:
        sources: dict[str, set[str]] = {}
        for c in cands:
            sources.setdefault(c.claim, set()).add(c.source)
        return {claim: float(len(s)) for claim, s in sources.items()}, {}


class ConsensusStrategy(Strategy):
    """Confidence-weighted vote of independent sources.

    A source counts once per claim (its best item), weighted by ``confidence x
    independence``; a source suspected of copying another candidate counts by its
    ``Candidate.independence`` (0..1), so a copy does not count as a second opinion.
    """

    name = "consensus"

    def _score(self, cands: list[Candidate]) -> tuple[dict[str, float], Extra]:
        best: dict[tuple[str, str], float] = {}
        for c in cands:
            key = (c.claim, c.source)
            best[key] = max(best.get(key, 0.0), c.confidence * c.independence)
        scores: dict[str, float] = {c.claim: 0.0 for c in cands}
        for (claim, _source), weight in best.items():
            scores[claim] += weight
        return scores, {}


class RecencyStrategy(Strategy):
    """The freshest item's claim wins; margin is the relative freshness gap 1 - f2 / f1."""

    name = "recency"

    def _score(self, cands: list[Candidate]) -> tuple[dict[str, float], Extra]:
        scores: dict[str, float] = {}
        for c in cands:
            scores[c.claim] = max(scores.get(c.claim, 0.0), c.freshness)
        return scores, {}

    def _margin(self, scores: Mapping[str, float], ranked: list[str], extra: Extra) -> float:
        first, second = scores[ranked[0]], scores[ranked[1]]
        return 0.0 if first <= 0 else 1.0 - second / first


def _carry(older: float, newer: float) -> float:
    """Share of belief carried from an observation with freshness ``older`` to one with
    ``newer`` (= exp(-dt / decay)); 1.0 when both have decayed to nothing."""
    if newer <= 0.0:
        return 1.0
    return min(1.0, older / newer)


def posterior(
    ordered: Sequence[Candidate],
    effective_claims: int,
    reliability: Callable[[Candidate], float],
    p_max: float,
    forgetting: float,
    spread: Callable[[Candidate], float | None] | None = None,
) -> tuple[dict[str, float], float, int]:
    """Naive-Bayes belief over the claims, processing ``ordered`` observations in turn.

    k = max(effective_claims, number of distinct claims, largest spread). Each observation of
    claim x with reliability p multiplies the belief in x by p and in every other claim by
    (1 - p) / (k_i - 1), both raised to the candidate's independence; k_i is the candidate's
    ``spread`` (how many claims its wrong reports behave as if spread over; None: k).
    p is clamped to [1/k_i, p_max]: an unreliable source is uninformative, never evidence
    against what it says, and no single vote is certain. With ``forgetting`` > 0 the belief
    is first pulled toward the prior by the carry factor between consecutive observations.
    Returns (belief per seen claim, belief mass of the k - n unseen claims, k).
    """
    claims = sorted({c.claim for c in ordered})
    spreads = {id(c): spread(c) for c in ordered} if spread is not None else {}
    spreads = {key: value for key, value in spreads.items() if value is not None}
    k = max(effective_claims, len(claims), math.ceil(max(spreads.values(), default=0) - 1e-9))
    prior = 1.0 / k
    belief = {claim: prior for claim in claims}
    unseen = (k - len(claims)) * prior
    unseen_prior = unseen
    previous: Candidate | None = None
    for cand in ordered:
        if forgetting > 0 and previous is not None:
            keep = _carry(previous.freshness, cand.freshness) ** forgetting
            belief = {x: keep * b + (1 - keep) * prior for x, b in belief.items()}
            unseen = keep * unseen + (1 - keep) * unseen_prior
        k_i = min(float(k), max(2.0, spreads.get(id(cand), float(k))))
        p = min(p_max, max(1.0 / k_i, reliability(cand)))
        hit = p**cand.independence
        miss = ((1 - p) / (k_i - 1)) ** cand.independence
        belief = {x: b * (hit if x == cand.claim else miss) for x, b in belief.items()}
        unseen *= miss
        total = sum(belief.values()) + unseen
        belief = {x: b / total for x, b in belief.items()}
        unseen /= total
        previous = cand
    return belief, unseen, k


def _posterior_margin(scores: Mapping[str, float], ranked: list[str], extra: Extra) -> float:
    unseen_each = (
        extra["unseen_claims_mass"] / extra["unseen_claims"] if extra["unseen_claims"] else 0.0
    )
    return scores[ranked[0]] - max(scores[ranked[1]], unseen_each)


class AuthorityStrategy(Strategy):
    """Votes weighted by the learned trust of their source for the type (pinned overrides).

    A naive-Bayes posterior where each distinct source's vote has reliability = trust mean,
    tempered by independence; confidence and freshness are ignored. ``effective_claims`` as
    in ``HybridWeights`` (None = the type's vocabulary size from ``claim_spaces``).
    """

    name = "authority"

    def __init__(
        self,
        effective_claims: int | None = 2,
        p_max: float = 0.97,
        claim_spaces: Mapping[str, int] | None = None,
    ) -> None:
        self.effective_claims = effective_claims
        self.claim_spaces = dict(DEFAULT_CLAIM_SPACES if claim_spaces is None else claim_spaces)
        self.p_max = p_max

    def params(self) -> dict[str, Any]:
        return {"effective_claims": self.effective_claims, "p_max": self.p_max}

    def _score(self, cands: list[Candidate]) -> tuple[dict[str, float], Extra]:
        k = self.effective_claims or self.claim_spaces.get(
            cands[0].knowledge_type, FALLBACK_CLAIM_SPACE
        )
        ordered = sorted(cands, key=lambda c: (c.observed_ts, str(c.item_id)))
        belief, unseen, k = posterior(ordered, k, lambda c: c.trust.mean, self.p_max, 0.0)
        return belief, {
            "effective_claims": k,
            "unseen_claims": k - len(belief),
            "unseen_claims_mass": unseen,
        }

    def _margin(self, scores: Mapping[str, float], ranked: list[str], extra: Extra) -> float:
        return _posterior_margin(scores, ranked, extra)


@dataclass(frozen=True, slots=True)
class HybridWeights:
    """Per-type parameters of the hybrid strategy.

    ``trust`` and ``confidence`` are the relative weights of the blend giving a vote's
    reliability: ``(trust * trust_mean + confidence * item_confidence) / (trust +
    confidence)``. ``forgetting`` scales how much evidence is forgotten between observations
    (1.0 = at the type's decay rate, 0 = ignore age). ``effective_claims`` is the number of
    alternatives a wrong report is assumed to spread over: wrong reports of different
    sources tend to agree (a shared blind spot, the previous value), so the tuned value is 2
    even for four-level vocabularies; None uses the type's vocabulary size, which makes the
    posterior over-confident when errors are correlated. ``p_max`` caps any single vote's
    reliability. With ``cap_at_confidence`` a vote never counts for more than its own stated
    confidence: a trusted source that says it is unsure (honest disagreement) is believed to
    be unsure, while the trust part of the blend still discounts over-confident sources.
    """

    trust: float = 0.7
    confidence: float = 0.3
    forgetting: float = 1.0
    effective_claims: int | None = 2
    p_max: float = 0.97
    cap_at_confidence: bool = True

    def __post_init__(self) -> None:
        if self.trust < 0 or self.confidence < 0 or self.trust + self.confidence <= 0:
            raise ValueError("hybrid trust/confidence weights must be >= 0, not both 0")
        if self.forgetting < 0 or not 0.5 < self.p_max < 1:
            raise ValueError("forgetting must be >= 0 and p_max within (0.5, 1)")
        if self.effective_claims is not None and self.effective_claims < 2:
            raise ValueError("effective_claims must be >= 2 (or None)")


class HybridStrategy(Strategy):
    """Trust x confidence votes, with stale evidence forgotten; per-type weights."""

    name = "hybrid"

    def __init__(
        self,
        weights: HybridWeights | None = None,
        per_type: Mapping[str, HybridWeights] | None = None,
        claim_spaces: Mapping[str, int] | None = None,
    ) -> None:
        self.weights = weights or HybridWeights()
        self.per_type = dict(per_type or {})
        self.claim_spaces = dict(DEFAULT_CLAIM_SPACES if claim_spaces is None else claim_spaces)
        self._params = {
            "default": asdict(self.weights),
            "per_type": {t: asdict(w) for t, w in sorted(self.per_type.items())},
        }
        self._weights_dicts = {t: asdict(w) for t, w in self.per_type.items()}

    def weights_for(self, knowledge_type: str) -> HybridWeights:
        return self.per_type.get(knowledge_type, self.weights)

    def params(self) -> dict[str, Any]:
        return copy.deepcopy(self._params)

    def _score(self, cands: list[Candidate]) -> tuple[dict[str, float], Extra]:
        ktype = cands[0].knowledge_type
        w = self.weights_for(ktype)
        k = w.effective_claims or self.claim_spaces.get(ktype, FALLBACK_CLAIM_SPACE)
        total = w.trust + w.confidence

        def reliability(c: Candidate) -> float:
            p = (w.trust * c.trust.mean + w.confidence * c.confidence) / total
            return min(p, c.confidence) if w.cap_at_confidence else p

        ordered = sorted(cands, key=lambda c: (c.freshness, c.observed_ts, str(c.item_id)))
        belief, unseen, k = posterior(ordered, k, reliability, w.p_max, w.forgetting)
        weights = self._weights_dicts.get(ktype, self._params["default"])
        return belief, {
            "knowledge_type": ktype,
            "weights": dict(weights),
            "effective_claims": k,
            "unseen_claims": k - len(belief),
            "unseen_claims_mass": unseen,
        }

    def _margin(self, scores: Mapping[str, float], ranked: list[str], extra: Extra) -> float:
        return _posterior_margin(scores, ranked, extra)


STRATEGIES: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    """Make ``cls`` available to ``get_strategy`` under ``cls.name``."""
    STRATEGIES[cls.name] = cls
    return cls


for _cls in (
    MajorityVoteStrategy,
    ConsensusStrategy,
    RecencyStrategy,
    AuthorityStrategy,
    HybridStrategy,
):
    register(_cls)


def get_strategy(name: str, **options: Any) -> Strategy:
    """A new strategy instance by name (``majority``, ``consensus``, ``recency``,
    ``authority``, ``hybrid``); ``options`` go to its constructor. Unknown name: KeyError."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; known: {sorted(STRATEGIES)}") from None
    return cls(**options)
