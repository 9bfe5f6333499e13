"""Dream engine: turn issues into ranked improvement proposals and rate proposal kinds.

Proposals are a deterministic function of issues, so any worker holding the same
``issue_pattern`` items regenerates the same proposals with the same ids.

Ranking score = ``expected_impact`` x quality factor x track-record factor x trend factor:

- quality factor ``0.75 + 0.5 * q`` from ``proposal_quality`` items for (kind, rule), q being
  their weighted ``score`` (or high/medium/low = 0.8/0.5/0.2); 1 without such items;
- track-record factor ``0.5 + success_rate`` from the rule-level ``learned_pattern`` (>= 3
  samples); else ``1 + 0.05 * min(fixes, 10)`` from ``successful_fix`` items with this kind and
  rule; 1 without knowledge;
- trend factor 1.1 for complexity-reducing kinds in a scope whose ``complexity_trend`` is
  ``increasing``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .analysis import scope_of
from .knowledge import Draft, draft, iter_payloads
from .rules import Issue

KIND_BY_RULE: Mapping[str, str] = {
    "long_function": "extract_function",
    "high_complexity": "simplify_conditionals",
    "deep_nesting": "flatten_nesting",
    "too_many_arguments": "introduce_parameter_object",
    "too_many_returns": "consolidate_returns",
    "large_class": "split_class",
    "bare_except": "narrow_except",
    "broad_except": "narrow_except",
    "mutable_default_argument": "use_none_default",
}
# How much of the underlying smell a proposal of this kind typically removes.
KIND_WEIGHT: Mapping[str, float] = {
    "extract_function": 0.8,
    "simplify_conditionals": 0.9,
    "flatten_nesting": 0.7,
    "introduce_parameter_object": 0.5,
    "consolidate_returns": 0.4,
    "split_class": 0.8,
    "narrow_except": 0.6,
    "use_none_default": 0.7,
}
_COMPLEXITY_KINDS = frozenset({"extract_function", "simplify_conditionals", "flatten_nesting"})
_QUALITY_VALUE = {"high": 0.8, "medium": 0.5, "low": 0.2}


@dataclass(frozen=True)
class Proposal:
    """One improvement proposal for one issue. ``id`` is stable across commits."""

    id: str
    kind: str
    rule: str
    fingerprint: str
    path: str
    qualname: str
    severity: str
    metric: float
    threshold: float
    expected_impact: float
    score: float
    reasons: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        return f"{self.path}::{self.qualname}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = self.target
        data["reasons"] = list(self.reasons)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Proposal:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["reasons"] = tuple(fields.get("reasons", ()))
        return cls(**fields)


def proposal_id(kind: str, fingerprint: str) -> str:
    """Stable proposal id: the kind plus the first 16 hex digits of the issue fingerprint."""
    return f"{kind}-{fingerprint[:16]}"


def expected_impact(issue: Issue, kind: str) -> float:
    """0..1: kind weight x (0.5 + 0.5 x how far past the threshold, capped at 100 %)."""
    if issue.threshold > 0:
        excess = issue.metric / issue.threshold - 1.0
    else:
        excess = issue.metric / 2.0
    excess = min(1.0, max(0.0, excess))
    return round(KIND_WEIGHT.get(kind, 0.5) * (0.5 + 0.5 * excess), 4)


@dataclass
class _DreamKnowledge:
    quality: dict[tuple[str, str], float]
    learned_rate: dict[str, tuple[float, int]]
    fixes: dict[tuple[str, str], int]
    increasing_scopes: set[str]


def _digest(knowledge: Iterable[Any]) -> _DreamKnowledge:
    items = list(knowledge)
    quality_sum: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for payload, weight in iter_payloads(items, "proposal_quality"):
        value = payload.get("score")
        if not isinstance(value, (int, float)):
            value = _QUALITY_VALUE.get(str(payload.get("quality")), 0.5)
        entry = quality_sum[(str(payload.get("proposal_kind")), str(payload.get("rule")))]
        entry[0] += float(value) * weight
        entry[1] += weight
    quality = {k: s / w for k, (s, w) in quality_sum.items() if w > 0}
    learned: dict[str, tuple[float, int]] = {}
    for payload, _ in iter_payloads(items, "learned_pattern"):
        pattern = str(payload.get("pattern", ""))
        if pattern.startswith("rule:") and "|" not in pattern:
            samples = int(payload.get("samples", 0))
            rule = pattern[5:]
            if samples >= learned.get(rule, (0.0, -1))[1]:
                learned[rule] = (float(payload.get("success_rate", 0.0)), samples)
    fixes: dict[tuple[str, str], int] = defaultdict(int)
    for payload, _ in iter_payloads(items, "successful_fix"):
        fixes[(str(payload.get("fix")), str(payload.get("rule")))] += 1
    increasing = {
        str(p.get("scope"))
        for p, _ in iter_payloads(items, "complexity_trend")
        if p.get("direction") == "increasing"
    }
    return _DreamKnowledge(quality, learned, dict(fixes), increasing)


def propose(
    issues: Iterable[Issue | Mapping[str, Any]],
    knowledge: Iterable[Any] = (),
    *,
    limit: int | None = None,
) -> list[Proposal]:
    """Proposals for ``issues`` (Issue objects or ``issue_pattern`` payloads), best first.

    Ties are broken by id, so the order is deterministic. Issues of unknown rules are skipped.
    """
    known = _digest(knowledge)
    proposals = []
    for raw in issues:
        issue = raw if isinstance(raw, Issue) else Issue.from_payload(raw)
        kind = KIND_BY_RULE.get(issue.rule)
        if kind is None:
            continue
        impact = expected_impact(issue, kind)
        score, reasons = impact, [f"impact {impact:.2f}"]
        quality = known.quality.get((kind, issue.rule))
        if quality is not None:
            score *= 0.75 + 0.5 * quality
            reasons.append(f"proposal quality {quality:.2f}")
        learned = known.learned_rate.get(issue.rule)
        if learned is not None and learned[1] >= 3:
            score *= 0.5 + learned[0]
            reasons.append(f"fix rate {learned[0]:.2f} over {learned[1]}")
        elif (fixes := known.fixes.get((kind, issue.rule), 0)) > 0:
            score *= 1 + 0.05 * min(fixes, 10)
            reasons.append(f"{fixes} past successful fixes")
        if kind in _COMPLEXITY_KINDS and scope_of(issue.path) in known.increasing_scopes:
            score *= 1.1
            reasons.append("complexity increasing in scope")
        proposals.append(
            Proposal(
                id=proposal_id(kind, issue.fingerprint),
                kind=kind,
                rule=issue.rule,
                fingerprint=issue.fingerprint,
                path=issue.path,
                qualname=issue.qualname,
                severity=issue.severity,
                metric=issue.metric,
                threshold=issue.threshold,
                expected_impact=impact,
                score=round(score, 6),
                reasons=tuple(reasons),
            )
        )
    proposals.sort(key=lambda p: (-p.score, p.id))
    return proposals[:limit] if limit is not None else proposals


def proposal_qualities(proposals: Iterable[Proposal], knowledge: Iterable[Any] = ()) -> list[Draft]:
    """One ``proposal_quality`` draft per (kind, rule) present in ``proposals``.

    ``score = 0.5 * mean expected impact + 0.5 * success rate`` where the success rate comes from
    the rule-level ``learned_pattern`` (0.5 when unknown); quality is ``high`` when score >= 0.6,
    ``low`` below 0.35, else ``medium``. Confidence grows with the evidence behind the rate:
    ``0.4 + 0.5 * min(1, samples / 20)``.
    """
    known = _digest(knowledge)
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for proposal in proposals:
        groups[(proposal.kind, proposal.rule)].append(proposal.expected_impact)
    drafts = []
    for kind, rule in sorted(groups):
        impacts = groups[(kind, rule)]
        mean_impact = sum(impacts) / len(impacts)
        rate, samples = known.learned_rate.get(rule, (None, 0))
        score = 0.5 * mean_impact + 0.5 * (rate if rate is not None else 0.5)
        quality = "high" if score >= 0.6 else "low" if score < 0.35 else "medium"
        payload = {
            "proposal_kind": kind,
            "rule": rule,
            "quality": quality,
            "score": round(score, 4),
            "proposals": len(impacts),
            "mean_expected_impact": round(mean_impact, 4),
            "samples": samples,
        }
        if rate is not None:
            payload["success_rate"] = rate
        drafts.append(draft("proposal_quality", payload, 0.4 + 0.5 * min(1.0, samples / 20)))
    return drafts
