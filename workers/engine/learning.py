"""Learning engine: observe what happened to issues between two analysed commits, and learn fix
rates from those observations.

Outcome of an issue present in ``before`` (the function is identified by path + qualname; it
"changed" when its own-code hash differs, see :mod:`.metrics`):

- ``fixed`` (success): the fingerprint is gone, the function still exists and changed, and no
  issue of another rule appeared in it;
- ``regressed`` (failure): the fingerprint is gone but a new issue appeared in that function;
- ``persisted`` (failure): the function changed and the issue is still there;
- ``removed`` (no verdict): the function no longer exists (deleted, renamed or moved).

An issue whose function did not change yields no outcome: nobody tried. Files that fail to
parse in ``after`` yield no outcomes either. ``after`` is re-judged with ``before``'s rules when
they differ, so a retune between the commits is never mistaken for a fix.

Learned patterns: ``rule:<rule>`` and ``rule:<rule>|<context>:<value>`` for each context of
the outcome (``severity`` as the *default* rules grade the metric, so a retune does not split the
statistics; ``crowd`` = single/multi issues in the function; plus whatever the caller supplies,
e.g. ``churn``/``age`` from Recall). ``effect`` is ``effective`` when the
success rate is >= 0.6, ``ineffective`` when < 0.3, else ``mixed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .analysis import Snapshot, reevaluate
from .calibration import (  # noqa: F401 - re-exported: Learning owns the calibration helpers
    accuracy,
    brier_improvement,
    brier_score,
    calibration_bins,
    calibration_report,
    expected_calibration_error,
)
from .dream import KIND_BY_RULE, proposal_id
from .knowledge import Draft, draft, iter_payloads
from .risk import risk_level, risk_subject
from .rules import Issue, margin_contexts, raw_severity, rule_metric

EFFECTIVE_AT = 0.6
INEFFECTIVE_BELOW = 0.3


@dataclass(frozen=True)
class Outcome:
    """What happened to one issue between two commits."""

    fingerprint: str
    rule: str
    path: str
    qualname: str
    status: str
    severity: str
    metric_before: float
    metric_after: float | None
    proposal_id: str | None
    context: Mapping[str, str] = field(default_factory=dict)
    commit: str | None = None
    appeared: bool = False  # an issue the function did not have before appeared in it

    @property
    def harmed(self) -> bool:
        """The change left the function worse: the rule's metric went up, or a new issue
        appeared in it (``regressed`` always counts)."""
        worse = self.metric_after is not None and self.metric_after > self.metric_before
        return self.status == "regressed" or self.appeared or worse

    @property
    def success(self) -> bool | None:
        """True for fixed, False for persisted/regressed, None for removed."""
        return {"fixed": True, "persisted": False, "regressed": False}.get(self.status)

    @property
    def target(self) -> str:
        return f"{self.path}::{self.qualname}"


def observe(
    before: Snapshot,
    after: Snapshot,
    *,
    changed_files: Iterable[str] | None = None,
    contexts: Mapping[str, Mapping[str, str]] | None = None,
) -> list[Outcome]:
    """Outcomes of ``before``'s issues as seen in ``after`` (see the module docstring).

    ``changed_files`` (from :meth:`GitRepo.changed_files`) is an optional fast path: issues in
    other files are skipped without looking. ``contexts`` maps a target (``path::qualname``) or a
    path to extra context buckets, e.g. ``{"churn": "high"}``; target entries override path ones.
    """
    if after.rules.digest() != before.rules.digest():
        after = reevaluate(after, before.rules)
    changed = set(changed_files) if changed_files is not None else None
    skipped = set(after.skipped)
    before_index = before.issues_by_unit
    after_index = after.issues_by_unit
    outcomes = []
    for issue in before.issues.values():
        if (changed is not None and issue.path not in changed) or issue.path in skipped:
            continue
        key = (issue.path, issue.qualname)
        old_unit = before.units[key]
        new_unit = after.units.get(key)
        metric_after = None
        appeared: list[Issue] = []
        if new_unit is None:
            status = "removed"
        elif new_unit.body_hash == old_unit.body_hash:
            continue
        else:
            metric_after = rule_metric(issue.rule, new_unit)
            old = {i.fingerprint for i in before_index.get(key, [])}
            appeared = [i for i in after_index.get(key, []) if i.fingerprint not in old]
            if issue.fingerprint in after.issues:
                status = "persisted"
            else:
                status = "regressed" if appeared else "fixed"
        outcomes.append(
            Outcome(
                fingerprint=issue.fingerprint,
                rule=issue.rule,
                path=issue.path,
                qualname=issue.qualname,
                status=status,
                severity=issue.severity,
                metric_before=issue.metric,
                metric_after=metric_after,
                proposal_id=_proposal_of(issue),
                context=_context(issue, before_index, contexts),
                commit=after.commit,
                appeared=bool(appeared),
            )
        )
    return outcomes


def _proposal_of(issue: Issue) -> str | None:
    kind = KIND_BY_RULE.get(issue.rule)
    return proposal_id(kind, issue.fingerprint) if kind else None


def _context(
    issue: Issue,
    index: Mapping[tuple[str, str], list[Issue]],
    extra: Mapping[str, Mapping[str, str]] | None,
) -> dict[str, str]:
    crowd = len(index.get((issue.path, issue.qualname), []))
    context = {
        "severity": raw_severity(issue.rule, issue.metric),
        "crowd": "multi" if crowd > 1 else "single",
        **margin_contexts(issue.rule, issue.metric),
    }
    if extra:
        context.update(extra.get(issue.path, {}))
        context.update(extra.get(issue.location, {}))
    return context


def effect_of(success_rate: float) -> str:
    if success_rate >= EFFECTIVE_AT:
        return "effective"
    return "ineffective" if success_rate < INEFFECTIVE_BELOW else "mixed"


_RECOMMENDATION = {
    "effective": "prioritise proposals for this pattern",
    "ineffective": "demote severity: changes rarely remove this issue",
    "mixed": "keep current settings",
}


POOLED_CONTEXTS = ("margin", "slack")


class FixRates:
    """Running success counts per pattern; feed outcomes with :meth:`add` as commits replay.

    Besides ``rule:<rule>`` and ``rule:<rule>|<key>:<value>``, the contexts in
    :data:`POOLED_CONTEXTS` are also counted over all rules as ``rule:*|<key>:<value>`` (a
    margin means the same for every rule, and pooling gives the rare successes more samples).
    """

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}  # pattern -> [successes, samples]

    def add(self, outcomes: Iterable[Outcome]) -> None:
        for outcome in outcomes:
            success = outcome.success
            if success is None:
                continue
            patterns = [f"rule:{outcome.rule}"]
            patterns += [f"rule:{outcome.rule}|{k}:{v}" for k, v in sorted(outcome.context.items())]
            patterns += [
                f"rule:*|{k}:{outcome.context[k]}" for k in POOLED_CONTEXTS if k in outcome.context
            ]
            for pattern in patterns:
                entry = self.counts.setdefault(pattern, [0, 0])
                entry[0] += int(success)
                entry[1] += 1

    def rate(self, pattern: str) -> tuple[int, int]:
        """``(successes, samples)`` of a pattern, ``(0, 0)`` when never seen."""
        successes, samples = self.counts.get(pattern, (0, 0))
        return successes, samples

    def learned_patterns(self, *, min_samples: int = 3) -> list[Draft]:
        """``learned_pattern`` drafts for patterns with at least ``min_samples`` outcomes.

        Confidence ``samples / (samples + 10)``, clamped to 0.1..0.95.
        """
        drafts = []
        for pattern in sorted(self.counts):
            successes, samples = self.counts[pattern]
            if samples < min_samples:
                continue
            rate = successes / samples
            effect = effect_of(rate)
            rule, _, context = pattern[5:].partition("|")
            payload = {
                "pattern": pattern,
                "effect": effect,
                "success_rate": round(rate, 4),
                "samples": samples,
                "successes": successes,
                "rule": rule,
                "recommendation": _RECOMMENDATION[effect],
            }
            if context:
                payload["context"] = context
            drafts.append(
                draft("learned_pattern", payload, min(0.95, max(0.1, samples / (samples + 10))))
            )
        return drafts


RISK_MIN_SAMPLES = 5


class ObservedRisk:
    """Learning's own view of risk, from what changes did (Analysis states it from the code,
    Think from its committee): per ``rule:<rule>|churn:<bucket>`` (:func:`.risk.risk_subject`,
    the subject the other two state it on), how often an observed change of a function carrying
    the issue left it worse (:attr:`Outcome.harmed`: the rule's metric went up or a new issue
    appeared in it). A removed function is no observation.

    ``risk_score`` = ``(harmed + 0.5) / (changes + 1)`` (Jeffreys), levels as
    :func:`.risk.risk_level`; confidence ``changes / (changes + 10)`` clamped to 0.1..0.95, the
    same growth with samples as ``learned_pattern``; subjects with fewer than
    :data:`RISK_MIN_SAMPLES` changes are not stated.
    """

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}  # subject -> [harmed, changes]

    def add(self, outcomes: Iterable[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.success is None:
                continue
            subject = risk_subject(outcome.rule, outcome.context.get("churn"))
            entry = self.counts.setdefault(subject, [0, 0])
            entry[0] += int(outcome.harmed)
            entry[1] += 1

    def risk_patterns(self, *, min_samples: int = RISK_MIN_SAMPLES) -> list[Draft]:
        drafts = []
        for subject in sorted(self.counts):
            harmed, changes = self.counts[subject]
            if changes < min_samples:
                continue
            score = (harmed + 0.5) / (changes + 1)
            payload = {
                "pattern": subject,
                "risk_level": risk_level(score),
                "risk_score": round(score, 4),
                "samples": changes,
                "evidence": f"{harmed} of {changes} observed changes left the function worse",
            }
            confidence = min(0.95, max(0.1, changes / (changes + 10)))
            drafts.append(draft("risk_pattern", payload, confidence))
        return drafts


def learned_patterns(outcomes: Iterable[Outcome], *, min_samples: int = 3) -> list[Draft]:
    """Stateless form of :class:`FixRates`: learned patterns of all the given outcomes."""
    rates = FixRates()
    rates.add(outcomes)
    return rates.learned_patterns(min_samples=min_samples)


def successful_fixes(outcomes: Iterable[Outcome]) -> list[Draft]:
    """One ``successful_fix`` draft per fixed outcome.

    ``fix`` is the proposal kind for the rule; ``improvement`` is the relative drop of the rule's
    metric, ``(before - after) / before`` clamped to 0..1 (count rules: 1.0 when gone).
    """
    drafts = []
    for outcome in outcomes:
        if outcome.status != "fixed":
            continue
        after = outcome.metric_after or 0.0
        before = outcome.metric_before
        improvement = 1.0 if before <= 0 else min(1.0, max(0.0, (before - after) / before))
        payload = {
            "rule": outcome.rule,
            "target": outcome.target,
            "fix": KIND_BY_RULE.get(outcome.rule, "refactor"),
            "improvement": round(improvement, 4),
            "fingerprint": outcome.fingerprint,
            "proposal": outcome.proposal_id or "",
            "metric_before": before,
            "metric_after": after,
        }
        if outcome.commit:
            payload["commit"] = outcome.commit
        drafts.append(draft("successful_fix", payload, 0.8))
    return drafts


def pattern_evolutions(
    history: Sequence[Mapping[str, int]], *, window: int = 10, threshold: float = 0.02
) -> list[Draft]:
    """``pattern_evolution`` drafts: trend of each rule's issue count over the last ``window``.

    ``history`` holds issue counts per rule for consecutive commits, oldest first (see
    :func:`.analysis.rule_counts`). ``rate`` is the least-squares slope divided by the mean count
    (relative change per commit); ``emerging`` above ``threshold``, ``declining`` below
    ``-threshold``, else ``stable``. Needs at least two commits; confidence grows with the window.
    """
    recent = list(history)[-window:] if window > 0 else []
    n = len(recent)
    if n < 2:
        return []
    rules = sorted({rule for counts in recent for rule in counts})
    xs = range(n)
    x_mean = (n - 1) / 2
    sxx = sum((x - x_mean) ** 2 for x in xs)
    drafts = []
    for rule in rules:
        ys = [counts.get(rule, 0) for counts in recent]
        y_mean = sum(ys) / n
        slope = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys, strict=True)) / sxx
        rate = slope / y_mean if y_mean > 0 else 0.0
        trend = "emerging" if rate > threshold else "declining" if rate < -threshold else "stable"
        payload = {
            "pattern": f"rule:{rule}",
            "trend": trend,
            "rate": round(rate, 4),
            "window": n,
            "first": ys[0],
            "last": ys[-1],
        }
        drafts.append(draft("pattern_evolution", payload, min(0.9, 0.3 + 0.06 * n)))
    return drafts


def predictions_from(items: Iterable[Any]) -> dict[str, float]:
    """``{proposal id: predicted_success}`` from ``decision_outcome`` items (later items win)."""
    return {
        str(p["proposal"]): float(p["predicted_success"])
        for p, _ in iter_payloads(items, "decision_outcome")
        if "proposal" in p and "predicted_success" in p
    }


def pair_outcomes(
    outcomes: Iterable[Outcome], predictions: Mapping[str, float]
) -> list[tuple[float, int]]:
    """``(predicted, observed)`` pairs for outcomes with a verdict and a prediction."""
    pairs = []
    for outcome in outcomes:
        pid = outcome.proposal_id
        if outcome.success is None or pid is None or pid not in predictions:
            continue
        pairs.append((predictions[pid], int(outcome.success)))
    return pairs
