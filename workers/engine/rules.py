"""Issue rules over unit metrics, their retunable thresholds, and the stable issue fingerprint.

Threshold rules fire when ``metric > threshold`` (strictly). Severity of a threshold rule grows
with the ratio ``metric / threshold``: ``low`` up to ``medium_ratio`` (1.5), ``medium`` up to
``high_ratio`` (2.0), ``high`` beyond. Count rules (threshold 0: any occurrence fires) have a
fixed base severity. A per-rule ``severity_offset`` (set by :meth:`Rules.retune`) shifts the
computed severity, clamped to low..high.

Retune policy (:meth:`Rules.retune`), applied to ``learned_pattern`` payloads:

1. Only rule-level patterns, ``pattern == "rule:<name>"`` for a known rule, are used; context
   patterns such as ``rule:long_function|churn:high`` are ignored.
2. Per rule, the payload with the most ``samples`` wins (ties: higher item confidence, then the
   later one in input order). Patterns with fewer than ``min_samples`` (10) samples are ignored.
3. If the payload carries a numeric ``threshold``, the rule's threshold becomes that value,
   clamped to [default/2, default*2] (count rules: [0, 3]).
4. Else ``effect == "ineffective"`` demotes the rule's severity by one level (offset -1);
   ``effect == "effective"`` restores it (offset 0); ``mixed`` leaves it unchanged.

Retuning is idempotent (offsets are set, not accumulated) and never removes issues unless an
explicit threshold is given, so snapshots stay comparable for Learning.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from .knowledge import iter_payloads
from .metrics import UnitMetrics

SEVERITIES = ("low", "medium", "high")


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One rule: which metric of which unit kinds it checks, and its defaults."""

    name: str
    metric: Callable[[UnitMetrics], float]
    kinds: frozenset[str]
    default_threshold: float
    base_severity: str | None = None  # set for count rules; None = severity by ratio
    description: str = ""


_FUNCTIONS = frozenset({"function", "method"})
_ALL = frozenset({"function", "method", "class", "module"})


def _threshold_rule(
    name: str, metric: Callable, kinds: frozenset, default: float, what: str
) -> RuleSpec:
    return RuleSpec(name, metric, kinds, default, None, what)


def _count_rule(
    name: str, metric: Callable, kinds: frozenset, severity: str, what: str
) -> RuleSpec:
    return RuleSpec(name, metric, kinds, 0, severity, what)


RULE_SPECS: Mapping[str, RuleSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            _threshold_rule("long_function", lambda u: u.length, _FUNCTIONS, 50, "own code lines"),
            _threshold_rule(
                "high_complexity", lambda u: u.complexity, _FUNCTIONS, 10, "McCabe complexity"
            ),
            _threshold_rule(
                "deep_nesting", lambda u: u.max_nesting, _FUNCTIONS, 4, "nested compound statements"
            ),
            _threshold_rule(
                "too_many_arguments",
                lambda u: u.arguments,
                _FUNCTIONS,
                5,
                "parameters (self/cls, *args, **kwargs not counted)",
            ),
            _threshold_rule(
                "too_many_returns", lambda u: u.returns, _FUNCTIONS, 6, "return statements"
            ),
            _threshold_rule(
                "large_class", lambda u: u.methods, frozenset({"class"}), 20, "methods"
            ),
            _count_rule(
                "bare_except",
                lambda u: u.bare_excepts,
                _ALL,
                "medium",
                "'except:' also catches SystemExit and KeyboardInterrupt",
            ),
            _count_rule(
                "broad_except",
                lambda u: u.broad_excepts,
                _ALL,
                "low",
                "'except Exception' without re-raise",
            ),
            _count_rule(
                "mutable_default_argument",
                lambda u: u.mutable_defaults,
                _FUNCTIONS,
                "medium",
                "a list/dict/set default is shared between calls",
            ),
        )
    }
)


def fingerprint(rule: str, path: str, qualname: str) -> str:
    """Stable id of an issue: sha1 of rule, path and qualname (no line numbers)."""
    return hashlib.sha1(f"{rule}:{path}::{qualname}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Issue:
    """One rule violation in one unit. ``line`` is informational only (not in the fingerprint)."""

    rule: str
    path: str
    qualname: str
    severity: str
    metric: float
    threshold: float
    fingerprint: str
    line: int = 0

    @property
    def location(self) -> str:
        return f"{self.path}::{self.qualname}"

    def to_payload(self) -> dict[str, Any]:
        """The ``issue_pattern`` payload of this issue."""
        return {
            "rule": self.rule,
            "location": self.location,
            "severity": self.severity,
            "fingerprint": self.fingerprint,
            "metric": self.metric,
            "threshold": self.threshold,
            "line": self.line,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Issue:
        """Rebuild an issue from an ``issue_pattern`` payload (fingerprint recomputed if absent)."""
        path, _, qualname = str(payload["location"]).partition("::")
        rule = str(payload["rule"])
        return cls(
            rule=rule,
            path=path,
            qualname=qualname,
            severity=str(payload["severity"]),
            metric=float(payload.get("metric", 0) or 0),
            threshold=float(payload.get("threshold", 0) or 0),
            fingerprint=str(payload.get("fingerprint") or fingerprint(rule, path, qualname)),
            line=int(payload.get("line", 0) or 0),
        )


@dataclass(frozen=True)
class Rules:
    """Thresholds and severity offsets of the rules; immutable, change with ``replace``/``retune``.

    ``notes`` records what retuning changed (for logs); it is not part of :meth:`digest`.
    """

    thresholds: Mapping[str, float] = field(default_factory=dict)
    severity_offsets: Mapping[str, int] = field(default_factory=dict)
    disabled: frozenset[str] = frozenset()
    medium_ratio: float = 1.5
    high_ratio: float = 2.0
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = (set(self.thresholds) | set(self.severity_offsets) | self.disabled) - set(
            RULE_SPECS
        )
        if unknown:
            raise ValueError(f"unknown rule(s): {', '.join(sorted(unknown))}")

    def threshold(self, rule: str) -> float:
        return float(self.thresholds.get(rule, RULE_SPECS[rule].default_threshold))

    def enabled(self, rule: str) -> bool:
        return rule not in self.disabled

    def digest(self) -> str:
        """Stable hash of everything that changes which issues are produced and how."""
        state = {
            "t": {r: self.threshold(r) for r in sorted(RULE_SPECS)},
            "o": {r: self.severity_offsets.get(r, 0) for r in sorted(RULE_SPECS)},
            "d": sorted(self.disabled),
            "m": [self.medium_ratio, self.high_ratio],
        }
        return hashlib.sha1(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]

    def severity(self, rule: str, metric: float) -> str:
        """Severity of a violation of ``rule`` with value ``metric`` (assumed above threshold)."""
        spec = RULE_SPECS[rule]
        if spec.base_severity is not None:
            level = SEVERITIES.index(spec.base_severity)
        else:
            ratio = metric / self.threshold(rule) if self.threshold(rule) > 0 else float("inf")
            level = 2 if ratio > self.high_ratio else 1 if ratio > self.medium_ratio else 0
        level += self.severity_offsets.get(rule, 0)
        return SEVERITIES[max(0, min(2, level))]

    def retune(self, learned: Iterable[Any], *, min_samples: int = 10) -> Rules:
        """Apply ``learned_pattern`` knowledge (items or payloads); see the module docstring."""
        best: dict[str, tuple[int, float, int, Mapping[str, Any]]] = {}
        for order, (payload, weight) in enumerate(iter_payloads(learned, "learned_pattern")):
            pattern = str(payload.get("pattern", ""))
            if not pattern.startswith("rule:") or "|" in pattern:
                continue
            rule = pattern[len("rule:") :]
            if rule not in RULE_SPECS:
                continue
            key = (int(payload.get("samples", 0)), weight, order, payload)
            if rule not in best or key[:3] > best[rule][:3]:
                best[rule] = key
        thresholds = dict(self.thresholds)
        offsets = dict(self.severity_offsets)
        notes = list(self.notes)
        for rule in sorted(best):
            samples, _, _, payload = best[rule]
            if samples < min_samples:
                continue
            explicit = payload.get("threshold")
            if isinstance(explicit, (int, float)) and not isinstance(explicit, bool):
                default = RULE_SPECS[rule].default_threshold
                low, high = (default / 2, default * 2) if default > 0 else (0.0, 3.0)
                value = min(high, max(low, float(explicit)))
                if value != self.threshold(rule):
                    thresholds[rule] = value
                    notes.append(f"{rule}: threshold {self.threshold(rule):g} -> {value:g}")
                continue
            effect = payload.get("effect")
            target = {"ineffective": -1, "effective": 0}.get(str(effect))
            if target is not None and offsets.get(rule, 0) != target:
                offsets[rule] = target
                notes.append(f"{rule}: severity offset -> {target} ({effect}, n={samples})")
        return replace(self, thresholds=thresholds, severity_offsets=offsets, notes=tuple(notes))


def raw_severity(rule: str, metric: float) -> str:
    """Severity under the default rules: a retune-independent context for learning."""
    return _DEFAULT_RULES.severity(rule, metric)


def margin_contexts(rule: str, metric: float) -> dict[str, str]:
    """How far past the *default* threshold an issue is (retune-independent, like
    :func:`raw_severity`): ``margin`` by ratio (edge < 1.15 <= near < 1.5 <= mid < 2 <= far; a
    count rule's ratio is its count) and ``slack`` by distance (``s1`` <= 1 < ``s3`` <= 3 <
    ``s10`` <= 10 < ``big``). An issue one line, branch or argument past its threshold is the
    likeliest to be cleared by the next change of its function."""
    limit = _DEFAULT_RULES.threshold(rule) if rule in RULE_SPECS else 0.0
    ratio = metric / limit if limit > 0 else metric
    distance = metric - limit
    margin = "edge" if ratio < 1.15 else "near" if ratio < 1.5 else "mid" if ratio < 2 else "far"
    slack = "s1" if distance <= 1 else "s3" if distance <= 3 else "s10" if distance <= 10 else "big"
    return {"margin": margin, "slack": slack}


def evaluate_units(units: Iterable[UnitMetrics], path: str, rules: Rules) -> list[Issue]:
    """All issues of the given units of one file, in unit order then rule order."""
    issues: list[Issue] = []
    active = [spec for spec in RULE_SPECS.values() if rules.enabled(spec.name)]
    for unit in units:
        for spec in active:
            if unit.kind not in spec.kinds:
                continue
            value = spec.metric(unit)
            limit = rules.threshold(spec.name)
            if value > limit:
                issues.append(
                    Issue(
                        rule=spec.name,
                        path=path,
                        qualname=unit.qualname,
                        severity=rules.severity(spec.name, value),
                        metric=value,
                        threshold=limit,
                        fingerprint=fingerprint(spec.name, path, unit.qualname),
                        line=unit.lineno,
                    )
                )
    return issues


def rule_metric(rule: str, unit: UnitMetrics) -> float:
    """The value of ``rule``'s metric for ``unit``."""
    return RULE_SPECS[rule].metric(unit)


_DEFAULT_RULES = Rules()
