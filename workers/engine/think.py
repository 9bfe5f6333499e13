"""Think engine: a committee of three scorers judges each proposal and decides what to do.

- **evidence** predicts the probability that the next change to the target removes the issue
  cleanly (what Learning will observe as ``fixed``), and how much evidence backs it;
- **impact** is Dream's expected impact;
- **risk** estimates how likely a change there is to break something.

Prediction (the number whose calibration the product measures: Brier skill against the base
rate, AUC, calibration) is a shrunk log-odds model anchored on the base rate:

1. ``b``, the base rate: Think's own past outcomes (``base`` = successes, samples of the
   proposals it predicted, which it observes itself), with a Jeffreys prior,
   ``(successes + 0.5) / (samples + 1)``; without ``base``, the pooled ``rule:<rule>`` fix rates
   of the ``learned_pattern`` items received. This is all Think knows without exchange, and then
   its forecast *is* the base rate.
2. Each piece of received evidence about the proposal, a ``learned_pattern`` ``P`` with ``n``
   samples and success rate ``r`` (the rule's own ``rule:<rule>``; the pooled margins
   ``rule:*|margin:<m>`` and ``rule:*|slack:<s>``, see :func:`.rules.margin_contexts`), moves
   the log-odds by ``logit((r n + strength b) / (n + strength)) - logit(b)``: its rate shrunk
   toward ``b`` with ``strength`` pseudo-samples (a Beta prior centred on the base rate). The
   forecast's log-odds are ``logit(b)`` + ``weight`` x the *mean* of these shifts (the
   features overlap: a naive-Bayes sum would count the same evidence two or three times).
   Thin evidence (small ``n``) moves nothing, so the forecast falls back to the base rate by
   construction.
3. The result is clipped to ``clip``.

The rates are pooled over the sources that state them (:func:`_pooled_patterns`): a fleet
working on several projects shares each project's Learning patterns through the exchange, and
the same pattern learned on two projects counts both projects' outcomes (the base rate ``b``
stays the project's own). The features and the two constants were chosen on one repository
(flask, see docs/workers.md) and evaluated on others; pooling was chosen on flask and werkzeug.

Decision, with ``utility = p * impact - (1 - p) * risk`` and ``strength`` = samples / (samples
+ rule_strength) of the rule's learned pattern (0 without knowledge):

- ``reject`` if strength >= 0.3 and (p <= 0.1 or utility < 0);
- ``execute`` if p >= 0.6, risk <= 0.4 and strength >= 0.5 (or >= 2 past successful fixes of
  this kind and rule);
- ``approve`` if utility >= 0.12;
- ``defer`` otherwise.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .dream import Proposal
from .knowledge import Draft, draft, iter_payloads
from .recall import Context, context_index
from .risk import risk_level, risk_subject
from .rules import margin_contexts, raw_severity

_KIND_RISK = {
    "extract_function": 0.2,
    "simplify_conditionals": 0.25,
    "flatten_nesting": 0.2,
    "introduce_parameter_object": 0.35,
    "consolidate_returns": 0.15,
    "split_class": 0.35,
    "narrow_except": 0.15,
    "use_none_default": 0.1,
}
_CHURN_RISK = {"low": 0.0, "medium": 0.1, "high": 0.2}
_SEVERITY_RISK = {"low": 0.0, "medium": 0.05, "high": 0.1}


@dataclass(frozen=True)
class ThinkConfig:
    """Tunables of the committee (defaults documented in the module docstring)."""

    strength: float = 20.0
    weight: float = 1.0
    min_samples: int = 3
    features: tuple[str, ...] = ("rule:{rule}", "rule:*|margin:{margin}", "rule:*|slack:{slack}")
    rule_strength: float = 10.0  # evidence strength of the rule's pattern, for the decision
    clip: tuple[float, float] = (0.001, 0.98)
    execute_min_p: float = 0.6
    execute_max_risk: float = 0.4
    execute_min_strength: float = 0.5
    approve_min_utility: float = 0.12
    reject_max_p: float = 0.1
    reject_min_strength: float = 0.3


@dataclass(frozen=True)
class Assessment:
    """The committee's verdict on one proposal."""

    proposal_id: str
    rule: str
    kind: str
    target: str
    fingerprint: str
    predicted_success: float
    impact: float
    risk: float
    evidence: float
    utility: float
    decision: str
    context: Mapping[str, str] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()


def _logit(p: float) -> float:
    p = min(1 - 1e-6, max(1e-6, p))
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class ThinkModel:
    """What Think learned from received knowledge; build with :meth:`from_knowledge`."""

    def __init__(
        self, config: ThinkConfig | None = None, base: tuple[float, float] | None = None
    ) -> None:
        self.config = config or ThinkConfig()
        self.base = base
        self.learned: dict[str, tuple[float, int]] = {}
        self.quality_rate: dict[tuple[str, str], float] = {}
        self.fixes: dict[tuple[str, str], int] = {}
        self.issue_counts: dict[str, int] = {}
        self.risk: dict[str, float] = {}
        self.targets: dict[str, dict[str, str]] = {}

    @classmethod
    def from_knowledge(
        cls,
        knowledge: Iterable[Any],
        config: ThinkConfig | None = None,
        base: tuple[float, float] | None = None,
    ) -> ThinkModel:
        model = cls(config, base)
        items = list(knowledge)
        model.learned = _pooled_patterns(items)
        for payload, _ in iter_payloads(items, "proposal_quality"):
            rate = payload.get("success_rate")
            if isinstance(rate, (int, float)):
                key = (str(payload.get("proposal_kind")), str(payload.get("rule")))
                model.quality_rate[key] = float(rate)
        fixes: dict[tuple[str, str], int] = defaultdict(int)
        for payload, _ in iter_payloads(items, "successful_fix"):
            fixes[(str(payload.get("fix")), str(payload.get("rule")))] += 1
        model.fixes = dict(fixes)
        locations: dict[str, set[str]] = defaultdict(set)
        for payload, _ in iter_payloads(items, "issue_pattern"):
            locations[str(payload.get("location"))].add(str(payload.get("rule")))
        model.issue_counts = {loc: len(rules) for loc, rules in locations.items()}
        risk_sum: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for payload, weight in iter_payloads(items, "risk_pattern"):
            if isinstance(payload.get("risk_score"), (int, float)):
                entry = risk_sum[str(payload.get("pattern"))]
                entry[0] += float(payload["risk_score"]) * weight
                entry[1] += weight
        model.risk = {k: s / w for k, (s, w) in risk_sum.items() if w > 0}
        model.targets = context_index(items)
        return model

    def base_rate(self) -> float:
        """``b``: Think's own outcomes if given, else the pooled received rule fix rates."""
        if self.base is not None:
            successes, samples = self.base
        else:
            successes = samples = 0.0
            for pattern, (rate, n) in self.learned.items():
                if pattern.startswith("rule:") and "|" not in pattern:
                    successes += rate * n
                    samples += n
        return (successes + 0.5) / (samples + 1.0)

    def predict(
        self, rule: str, kind: str, severity: str, context: Mapping[str, str]
    ) -> tuple[float, float, list[str]]:
        """``(probability of a clean fix, evidence strength 0..1, reasons)``."""
        cfg = self.config
        low, high = cfg.clip
        base = self.base_rate()
        reasons = [f"base rate {base:.3f}"]
        shifts = []
        values = {"rule": rule, **context}
        for feature in cfg.features:
            try:
                pattern = feature.format(**values)
            except KeyError:
                continue
            stats = self.learned.get(pattern)
            if stats is None or stats[1] < cfg.min_samples:
                continue
            rate, n = stats
            shrunk = (rate * n + base * cfg.strength) / (n + cfg.strength)
            shifts.append(_logit(shrunk) - _logit(base))
            reasons.append(f"{pattern}: {rate:.3f} (n={n})")
        log_odds = _logit(base)
        if shifts:  # the mean, not the sum: the features overlap (a naive sum overcounts)
            log_odds += cfg.weight * sum(shifts) / len(shifts)
        learned_rule = self.learned.get(f"rule:{rule}")
        strength = learned_rule[1] / (learned_rule[1] + cfg.rule_strength) if learned_rule else 0.0
        return min(high, max(low, _sigmoid(log_odds))), strength, reasons


def _pooled_patterns(items: list[Any]) -> dict[str, tuple[float, int]]:
    """``{pattern: (success rate, samples)}`` of the received ``learned_pattern`` items, pooled
    over their sources: each source (a Learning worker, one per project) states the counts of
    its own outcomes, so the same pattern learned on several projects adds their successes and
    samples (the exchange keeps one item per source and pattern)."""
    pooled: dict[str, list[float]] = {}
    for payload, _ in iter_payloads(items, "learned_pattern"):
        try:
            samples = int(payload.get("samples", 0))
            rate = float(payload.get("success_rate", 0.0))
        except (TypeError, ValueError):
            continue
        if samples > 0:
            entry = pooled.setdefault(str(payload.get("pattern", "")), [0.0, 0])
            entry[0] += rate * samples
            entry[1] += samples
    return {pattern: (s / n, int(n)) for pattern, (s, n) in pooled.items()}


def _context_for(
    proposal: Proposal,
    given: Context | Mapping[str, str] | None,
    model: ThinkModel,
    crowd: int,
) -> dict[str, str]:
    context: dict[str, str] = {}
    known = model.targets.get(proposal.target, {})
    for aspect in ("churn", "age"):
        if aspect in known:
            context[aspect] = known[aspect]
    if isinstance(given, Context):
        context.update(given.buckets)
    elif given is not None:
        context.update(given)
    context["severity"] = raw_severity(proposal.rule, proposal.metric)
    context["crowd"] = "multi" if crowd > 1 else "single"
    context.update(margin_contexts(proposal.rule, proposal.metric))
    return context


def assess(
    proposals: Iterable[Proposal],
    knowledge: Iterable[Any] = (),
    *,
    contexts: Mapping[str, Context | Mapping[str, str]] | None = None,
    config: ThinkConfig | None = None,
    base: tuple[float, float] | None = None,
) -> list[Assessment]:
    """Score and decide every proposal (input order kept).

    ``contexts`` maps proposal id to Recall's :class:`Context` (or plain buckets such as
    ``{"churn": "high"}``); ``knowledge`` is any received items (see :mod:`.knowledge`);
    ``base`` is ``(successes, samples)`` of Think's own past outcomes (the base rate of the
    module docstring).
    """
    proposals = list(proposals)
    model = ThinkModel.from_knowledge(knowledge, config, base)
    cfg = model.config
    per_target: dict[str, set[str]] = defaultdict(set)
    for proposal in proposals:
        per_target[proposal.target].add(proposal.rule)
    assessments = []
    for proposal in proposals:
        crowd = max(len(per_target[proposal.target]), model.issue_counts.get(proposal.target, 0))
        given = (contexts or {}).get(proposal.id)
        context = _context_for(proposal, given, model, crowd)
        p, strength, reasons = model.predict(
            proposal.rule, proposal.kind, context["severity"], context
        )
        risk = _risk(proposal, context, model)
        impact = proposal.expected_impact
        utility = p * impact - (1 - p) * risk
        fixes = model.fixes.get((proposal.kind, proposal.rule), 0)
        if strength >= cfg.reject_min_strength and (p <= cfg.reject_max_p or utility < 0):
            decision = "reject"
        elif (
            p >= cfg.execute_min_p
            and risk <= cfg.execute_max_risk
            and (strength >= cfg.execute_min_strength or fixes >= 2)
        ):
            decision = "execute"
        elif utility >= cfg.approve_min_utility:
            decision = "approve"
        else:
            decision = "defer"
        if fixes:
            reasons.append(f"{fixes} past successful {proposal.kind} fixes")
        assessments.append(
            Assessment(
                proposal_id=proposal.id,
                rule=proposal.rule,
                kind=proposal.kind,
                target=proposal.target,
                fingerprint=proposal.fingerprint,
                predicted_success=round(p, 4),
                impact=impact,
                risk=round(risk, 4),
                evidence=round(strength, 4),
                utility=round(utility, 4),
                decision=decision,
                context=context,
                reasons=tuple(reasons),
            )
        )
    return assessments


def _risk(proposal: Proposal, context: Mapping[str, str], model: ThinkModel) -> float:
    risk = _KIND_RISK.get(proposal.kind, 0.25)
    risk += _CHURN_RISK.get(context.get("churn", ""), 0.05)
    risk += _SEVERITY_RISK.get(proposal.severity, 0.0)
    if context.get("crowd") == "multi":
        risk += 0.1
    learned = model.risk.get(risk_subject(proposal.rule, context.get("churn")))
    if learned is not None:
        risk = 0.5 * risk + 0.5 * learned
    return min(1.0, max(0.0, risk))


def decision_outcomes(
    assessments: Iterable[Assessment], *, known: Iterable[Any] = (), tolerance: float = 0.02
) -> list[Draft]:
    """One ``decision_outcome`` draft per assessment (``outcome`` is ``unknown`` until Learning
    observes it). Confidence ``0.3 + 0.6 * evidence``; urgency high for ``execute``, low for
    ``reject``, else normal.

    An assessment whose proposal already has, in ``known`` items, the same decision and a
    predicted success within ``tolerance`` is left out (nothing new to say).
    """
    urgency = {"execute": "high", "reject": "low"}
    previous = {
        str(p.get("proposal")): (p.get("decision"), p.get("predicted_success"))
        for p, _ in iter_payloads(known, "decision_outcome")
    }
    drafts = []
    for a in assessments:
        before = previous.get(a.proposal_id)
        if (
            before is not None
            and before[0] == a.decision
            and isinstance(before[1], (int, float))
            and abs(before[1] - a.predicted_success) <= tolerance
        ):
            continue
        payload = {
            "proposal": a.proposal_id,
            "decision": a.decision,
            "predicted_success": a.predicted_success,
            "rule": a.rule,
            "outcome": "unknown",
            "kind": a.kind,
            "target": a.target,
            "fingerprint": a.fingerprint,
            "impact": a.impact,
            "risk": a.risk,
            "evidence": a.evidence,
            "utility": a.utility,
        }
        drafts.append(
            draft(
                "decision_outcome",
                payload,
                0.3 + 0.6 * a.evidence,
                urgency.get(a.decision, "normal"),
            )
        )
    return drafts


def risk_patterns(assessments: Iterable[Assessment], *, min_samples: int = 1) -> list[Draft]:
    """``risk_pattern`` drafts per ``rule:<rule>|churn:<bucket>`` group of assessments.

    ``risk_score`` is the group's mean risk; ``risk_level`` low < 0.25 <= medium < 0.5 <= high
    < 0.75 <= critical. Confidence ``samples / (samples + 5)``.
    """
    groups: dict[str, list[Assessment]] = defaultdict(list)
    for a in assessments:
        groups[risk_subject(a.rule, a.context.get("churn"))].append(a)
    drafts = []
    for pattern in sorted(groups):
        group = groups[pattern]
        if len(group) < min_samples:
            continue
        score = sum(a.risk for a in group) / len(group)
        mean_p = sum(a.predicted_success for a in group) / len(group)
        payload = {
            "pattern": pattern,
            "risk_level": risk_level(score),
            "risk_score": round(score, 4),
            "samples": len(group),
            "evidence": f"{len(group)} proposals, mean predicted success {mean_p:.2f}",
        }
        drafts.append(draft("risk_pattern", payload, len(group) / (len(group) + 5)))
    return drafts
