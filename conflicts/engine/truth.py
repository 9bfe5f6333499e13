"""Calibrated truth discovery: source reliability by EM over all claims, and a posterior strategy.

Pure Python (no Django). Two parts:

* ``estimate_trust(candidates, labels, trusts, params) -> {source: Trust}``: a Dawid-Skene
  style EM over every claim of one knowledge type (active and superseded items alike, each a
  ``Candidate`` with its subject, freshness now, stated confidence and copy independence).
  Unknowns: each subject's true claim (latent) and each source's reliability r_s (the
  probability that what it says is true), with a Beta(prior_alpha, prior_beta) prior.

      E-step  P(x | claims of subject) ∝ prod_i  p_i^{w_i}          if claim_i = x
                                            ((1 - p_i)/(k - 1))^{w_i} otherwise
              with p_i = item_reliability(r_s(i), confidence_i), w_i = independence_i,
              k = effective claims (2: wrong readings of different sources agree), evidence
              older than the subject's newest observation partly forgotten (``posterior``).
              A claim a person decided on is not inferred: q_i = 1 if it won, 0 if it lost;
              nor is one an observed outcome labels (``observations``: a source that
              measures what happened, e.g. Learning's observed risk, says which claim is true).
      M-step  alpha_s = prior_alpha + sum_i v_i q_i,  beta_s = prior_beta + sum_i v_i (1 - q_i)
              v_i = f_i / f_newest(subject) (a claim made long before the subject's newest
              one may be stale, not wrong), times human_weight for a claim a person decided
              on, or outcome_weight x the observation's strength for one an outcome labels
              (outcome_weight < human_weight: people stay the strongest signal).

  Human decisions are labelled data with a large weight, so they dominate what a source is
  believed to be; claims no one decided still count (agreement with the inferred truth).

* ``item_reliability(trust, confidence)``: the probability that *this* claim is right. A Beta
  whose prior is the claim's own stated confidence worth ``confidence_strength``
  pseudo-observations, updated with the source's learned evidence (alpha, beta above the
  prior): a new source is believed as far as it says, an established source as far as its
  record says. A pinned trust is used as it is.

* ``TruthStrategy`` (name ``truth``): the naive-Bayes posterior above on the conflict's
  candidates; ``margin`` is the **posterior probability of the winning claim** (0 on a tie),
  so the auto-resolve threshold is a probability: "0.9" should be right about 90 % of the
  time (the bench prints the reliability diagram). Several independent trusted sources
  multiply their likelihood ratios, so the posterior can exceed any single item's confidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .candidates import Candidate, ItemId, Trust
from .strategies import Extra, Strategy, posterior, register


@dataclass(frozen=True, slots=True)
class TruthParams:
    """Parameters of the reliability model (defaults: the product's)."""

    #: A source's stated confidence counts as this many observations until its record speaks.
    confidence_strength: float = 4.0
    #: Weight of a claim a person decided on, relative to one inferred claim.
    human_weight: float = 5.0
    #: Weight of a claim labelled by an observed outcome (``estimate_trust``'s
    #: ``observations``), times the observation's strength: below a person's decision.
    outcome_weight: float = 2.0
    #: Beta prior of a source's reliability (the ``SourceTrust`` prior: as weak as 2 + 2).
    prior_alpha: float = 2.0
    prior_beta: float = 2.0
    #: Alternatives a wrong report spreads over until a source's own spread is learned
    #: (2: wrong reports tend to agree).
    effective_claims: int = 2
    #: Pairs of wrong reports the spread prior is worth (a source's: the type's agreement;
    #: the type's: 1 / (effective_claims - 1)).
    spread_prior_pairs: float = 10.0
    #: No single claim is certain.
    p_max: float = 0.99
    #: Evidence older than a subject's newest observation is forgotten at the type's decay.
    forgetting: float = 1.0
    iterations: int = 50
    tolerance: float = 1e-5
    #: alpha + beta never exceed this (older evidence is scaled down: drift is noticed).
    max_evidence: float = 400.0

    def __post_init__(self) -> None:
        if self.confidence_strength < 0 or self.human_weight <= 0:
            raise ValueError("confidence_strength must be >= 0 and human_weight > 0")
        if not 0 <= self.outcome_weight < self.human_weight:
            raise ValueError("outcome_weight must be >= 0 and below human_weight")
        if self.effective_claims < 2 or not 0.5 < self.p_max < 1:
            raise ValueError("effective_claims must be >= 2 and p_max within (0.5, 1)")


DEFAULT_TRUTH = TruthParams()


def item_reliability(trust: Trust, confidence: float, params: TruthParams = DEFAULT_TRUTH) -> float:
    """Probability that a claim stated with ``confidence`` by a source with ``trust`` is true."""
    if trust.pinned is not None:
        return trust.pinned
    won = max(0.0, trust.alpha - params.prior_alpha)
    lost = max(0.0, trust.beta - params.prior_beta)
    n0 = params.confidence_strength
    if n0 + won + lost <= 0:
        return trust.learned_mean
    return (n0 * confidence + won) / (n0 + won + lost)


def _belief(
    cands: Sequence[Candidate], params: TruthParams, trusts: Mapping[str, Trust] | None = None
) -> tuple[dict[str, float], float, int]:
    ordered = sorted(cands, key=lambda c: (c.freshness, c.observed_ts, str(c.item_id)))

    def trust_of(c: Candidate) -> Trust:
        return trusts.get(c.source, c.trust) if trusts is not None else c.trust

    def rel(c: Candidate) -> float:
        return item_reliability(trust_of(c), c.confidence, params)

    def spread(c: Candidate) -> float | None:
        return trust_of(c).spread

    return posterior(ordered, params.effective_claims, rel, params.p_max, params.forgetting, spread)


def claim_probabilities(
    candidates: Sequence[Candidate], params: TruthParams = DEFAULT_TRUTH
) -> dict[str, float]:
    """Posterior probability of each claim among ``candidates`` (one subject)."""
    if not candidates:
        return {}
    belief, _unseen, _k = _belief(candidates, params)
    return belief


@dataclass(frozen=True)
class Estimate:
    """Result of ``estimate_trust``: new trust per source, iterations run, and each claim's
    probability of being true at the fixed point (for diagnostics and the history)."""

    trusts: dict[str, Trust]
    iterations: int
    converged: bool
    truth_probability: dict[ItemId, float]


def estimate_trust(
    candidates: Sequence[Candidate],
    labels: Mapping[ItemId, bool] | None = None,
    trusts: Mapping[str, Trust] | None = None,
    params: TruthParams = DEFAULT_TRUTH,
    observations: Mapping[ItemId, tuple[bool, float]] | None = None,
) -> Estimate:
    """EM estimate of every source's reliability from all ``candidates`` of one type.

    ``candidates`` are grouped into subjects by ``(knowledge_type, subject)``; ``labels``
    maps item ids a person decided on to whether the item's claim won; ``trusts`` gives the
    current trust per source (only its pin is kept: pinned sources vote with the pin while
    their learned values are still re-estimated). Sources without any claim are left out.

    ``observations`` are outcome-grounded labels: item id -> (whether its claim is the one
    observed for its subject, the observation's strength 0..1), e.g. what a source that
    measures outcomes (not one that forecasts them) reports. Like a person's decision the
    claim is then not inferred (q = 1 or 0), but it weighs ``outcome_weight`` x strength in
    the M-step, below ``human_weight``; a person's label on the same item wins.
    """
    labels = dict(labels or {})
    weights = dict.fromkeys(labels, params.human_weight)  # a labelled claim's M-step weight
    for item_id, (agrees, strength) in (observations or {}).items():
        if item_id not in labels and strength > 0 and params.outcome_weight > 0:
            labels[item_id] = agrees
            weights[item_id] = params.outcome_weight * min(1.0, strength)
    pins = {s: t.pinned for s, t in (trusts or {}).items() if t.pinned is not None}
    tasks: dict[tuple[str, str], list[Candidate]] = {}
    for c in candidates:
        tasks.setdefault((c.knowledge_type, c.subject), []).append(c)
    sources = sorted({c.source for c in candidates})
    # The type's vocabulary as far as the evidence shows it: no spread exceeds it.
    vocabulary = max(params.effective_claims, len({c.claim for c in candidates}))
    current = {s: Trust(params.prior_alpha, params.prior_beta, pins.get(s)) for s in sources}
    q: dict[ItemId, float] = {}
    converged = False
    iteration = 0
    while iteration < params.iterations:
        iteration += 1
        q = _expectation(tasks, labels, current, params)
        new = _maximisation(tasks, weights, q, pins, sources, params, vocabulary)
        change = max(
            (abs(new[s].learned_mean - current[s].learned_mean) for s in sources), default=0.0
        )
        current = new
        if change < params.tolerance:
            converged = True
            break
    return Estimate(current, iteration, converged, q)


def _expectation(tasks, labels, trusts, params) -> dict[ItemId, float]:
    q: dict[ItemId, float] = {}
    for cands in tasks.values():
        belief, _unseen, _k = _belief(cands, params, trusts)
        for c in cands:
            label = labels.get(c.item_id)
            q[c.item_id] = float(label) if label is not None else belief[c.claim]
    return q


def _maximisation(tasks, weights, q, pins, sources, params, vocabulary) -> dict[str, Trust]:
    won = dict.fromkeys(sources, 0.0)
    lost = dict.fromkeys(sources, 0.0)
    # Agreement of wrong reports: for each source, weighted pairs (its report, another
    # source's report on the same subject) that are both wrong, and how many say the same.
    pairs = dict.fromkeys(sources, 0.0)
    agree = dict.fromkeys(sources, 0.0)
    for cands in tasks.values():
        newest = max(c.freshness for c in cands)
        fresh = {}
        for c in cands:
            # A claim made long before the subject's newest one may be stale, not wrong.
            v = 1.0 if newest <= 0 else min(1.0, c.freshness / newest)
            fresh[c.item_id] = v
            v *= weights.get(c.item_id, 1.0)
            won[c.source] += v * q[c.item_id]
            lost[c.source] += v * (1.0 - q[c.item_id])
        for a in cands:
            qa = q[a.item_id]
            if qa >= 1.0:
                continue
            for b in cands:
                if b.source == a.source:
                    continue
                # Probability that both are wrong: one truth per subject, so two different
                # claims are both wrong only outside both of their shares of the belief.
                qb = q[b.item_id]
                both = 1.0 - max(qa, qb) if a.claim == b.claim else max(0.0, 1.0 - qa - qb)
                w = both * a.independence * b.independence * fresh[a.item_id] * fresh[b.item_id]
                pairs[a.source] += w
                agree[a.source] += w * (a.claim == b.claim)
    # Each source's agreement is shrunk toward the type's (itself shrunk toward the prior
    # agreement 1 / (effective_claims - 1)): a source with few wrong reports has the type's.
    n0 = params.spread_prior_pairs
    prior_agreement = 1.0 / (params.effective_claims - 1)
    a0 = (n0 * prior_agreement + sum(agree.values())) / (n0 + sum(pairs.values()))
    out = {}
    for s in sources:
        alpha, beta = params.prior_alpha + won[s], params.prior_beta + lost[s]
        if alpha + beta > params.max_evidence:
            scale = params.max_evidence / (alpha + beta)
            alpha, beta = alpha * scale, beta * scale
        agreement = (n0 * a0 + agree[s]) / (n0 + pairs[s])
        spread = min(float(vocabulary), max(2.0, 1.0 + 1.0 / max(agreement, 1e-9)))
        out[s] = Trust(alpha, beta, pins.get(s), spread)
    return out


class TruthStrategy(Strategy):
    """Calibrated posterior over the claims; the margin is the winner's posterior probability."""

    name = "truth"

    def __init__(self, params: TruthParams | None = None) -> None:
        self.truth_params = params or DEFAULT_TRUTH

    def params(self) -> dict[str, Any]:
        return asdict(self.truth_params)

    def _score(self, cands: list[Candidate]) -> tuple[dict[str, float], Extra]:
        belief, unseen, k = _belief(cands, self.truth_params)
        return belief, {
            "spread": {
                str(c.item_id): None if c.trust.spread is None else round(c.trust.spread, 4)
                for c in cands
            },
            "knowledge_type": cands[0].knowledge_type,
            "effective_claims": k,
            "unseen_claims_mass": unseen,
            "reliability": {
                str(c.item_id): round(item_reliability(c.trust, c.confidence, self.truth_params), 6)
                for c in cands
            },
        }

    def _margin(self, scores: Mapping[str, float], ranked: list[str], extra: Extra) -> float:
        return scores[ranked[0]]


register(TruthStrategy)
