"""Recall engine: context for proposals from file history and past knowledge.

For each proposal Recall gathers: file churn and age (from git history), past successful fixes
of the same rule (and of the same target), and the rule's learned fix rate. Buckets (the
``value`` of ``context_enrichment`` items, also the context keys Learning groups outcomes by):

- churn: ``low`` (<= 2 commits), ``medium`` (3..10), ``high`` (> 10);
- age: ``new`` (< 30 days), ``recent`` (< 365 days), ``old``; ``unknown`` without history;
- past_fixes: ``none``, ``few`` (1..3), ``many`` (> 3);
- track_record: the rule's learned effect (effective/ineffective/mixed) or ``unknown``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .dream import Proposal
from .gitrepo import FileStats
from .knowledge import Draft, draft, iter_payloads


def churn_bucket(churn: int) -> str:
    return "low" if churn <= 2 else "medium" if churn <= 10 else "high"


def age_bucket(age_days: float | None) -> str:
    if age_days is None:
        return "unknown"
    return "new" if age_days < 30 else "recent" if age_days < 365 else "old"


def fixes_bucket(count: int) -> str:
    return "none" if count == 0 else "few" if count <= 3 else "many"


@dataclass(frozen=True)
class Context:
    """What Recall found about one proposal's target."""

    proposal_id: str
    target: str
    rule: str
    churn: int
    age_days: float | None
    past_fixes: int
    target_fixes: int
    fix_rate: float | None
    fix_samples: int
    track_record: str

    @property
    def buckets(self) -> dict[str, str]:
        """Context keys for Learning/Think: ``{"churn": ..., "age": ...}``."""
        return {"churn": churn_bucket(self.churn), "age": age_bucket(self.age_days)}


@dataclass(frozen=True)
class Retrieval:
    """Statistics of one kind of knowledge lookup over a batch of proposals."""

    query: str
    queries: int
    hits: int
    results: int
    latency_ms: float

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0


@dataclass(frozen=True)
class RecallResult:
    contexts: Mapping[str, Context]  # by proposal id
    retrievals: tuple[Retrieval, ...]


def _fix_counts(items: list) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """``successful_fix`` counts by rule and by (rule, target)."""
    by_rule: dict[str, int] = defaultdict(int)
    by_target: dict[tuple[str, str], int] = defaultdict(int)
    for payload, _ in iter_payloads(items, "successful_fix"):
        by_rule[str(payload.get("rule"))] += 1
        by_target[(str(payload.get("rule")), str(payload.get("target")))] += 1
    return by_rule, by_target


def _learned_rates(items: list) -> dict[str, tuple[float, int, str]]:
    """Per rule, the ``learned_pattern`` with the most samples: (success rate, samples, effect)."""
    learned: dict[str, tuple[float, int, str]] = {}
    for payload, _ in iter_payloads(items, "learned_pattern"):
        pattern = str(payload.get("pattern", ""))
        if pattern.startswith("rule:") and "|" not in pattern:
            samples = int(payload.get("samples", 0))
            if samples >= learned.get(pattern[5:], (0.0, -1, ""))[1]:
                learned[pattern[5:]] = (
                    float(payload.get("success_rate", 0.0)),
                    samples,
                    str(payload.get("effect")),
                )
    return learned


def _retrievals(
    queries: int, hits: dict, results: dict, fix_ms: float, learned_ms: float, lookup_ms: float
) -> tuple[Retrieval, ...]:
    """The retrieval statistics of one recall: three lookups per proposal."""
    per_query = lookup_ms / 3 / queries if queries else 0.0
    per_fix = round(fix_ms / max(queries, 1) + per_query, 4)
    per_learned = round(learned_ms / max(queries, 1) + per_query, 4)
    return (
        Retrieval("successful_fix by rule", queries, hits["rule"], results["rule"], per_fix),
        Retrieval("successful_fix by target", queries, hits["target"], results["target"], per_fix),
        Retrieval(
            "learned_pattern by rule", queries, hits["learned"], results["learned"], per_learned
        ),
    )


def recall(
    proposals: Iterable[Proposal],
    file_stats: Mapping[str, FileStats],
    knowledge: Iterable[Any] = (),
    *,
    now: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> RecallResult:
    """Context for each proposal.

    ``file_stats`` comes from :meth:`GitRepo.file_stats` at the analysed commit; ``now`` (unix
    seconds) defaults to the newest ``last_time`` in it, so results depend only on the inputs.
    ``clock`` only feeds the ``latency_ms`` statistics.
    """
    proposals = list(proposals)
    items = list(knowledge)
    if now is None:
        now = max((s.last_time for s in file_stats.values()), default=0)

    started = clock()
    by_rule, by_target = _fix_counts(items)
    fix_ms = (clock() - started) * 1000.0
    started = clock()
    learned = _learned_rates(items)
    learned_ms = (clock() - started) * 1000.0

    contexts: dict[str, Context] = {}
    hits = {"rule": 0, "target": 0, "learned": 0}
    results = {"rule": 0, "target": 0, "learned": 0}
    started = clock()
    for proposal in proposals:
        stats = file_stats.get(proposal.path)
        rule_fixes = by_rule.get(proposal.rule, 0)
        target_fixes = by_target.get((proposal.rule, proposal.target), 0)
        rate = learned.get(proposal.rule)
        for key, count in (
            ("rule", rule_fixes),
            ("target", target_fixes),
            ("learned", int(rate is not None)),
        ):
            hits[key] += count > 0
            results[key] += count
        contexts[proposal.id] = Context(
            proposal_id=proposal.id,
            target=proposal.target,
            rule=proposal.rule,
            churn=stats.churn if stats else 0,
            age_days=round(stats.age_days(now), 2) if stats else None,
            past_fixes=rule_fixes,
            target_fixes=target_fixes,
            fix_rate=rate[0] if rate else None,
            fix_samples=rate[1] if rate else 0,
            track_record=rate[2] if rate else "unknown",
        )
    lookup_ms = (clock() - started) * 1000.0
    retrievals = _retrievals(len(proposals), hits, results, fix_ms, learned_ms, lookup_ms)
    return RecallResult(contexts=contexts, retrievals=retrievals)


def context_enrichments(result: RecallResult, known: Iterable[Any] = ()) -> list[Draft]:
    """``context_enrichment`` drafts: churn, age, past_fixes and track_record per proposal.

    Aspects whose value equals the one already in ``known`` (received ``context_enrichment``
    items) are not repeated. Confidence 0.9 for facts from git, 0.7 for knowledge-derived ones.
    """
    already = context_index(known)
    drafts = []
    for pid in sorted(result.contexts):
        ctx = result.contexts[pid]
        aspects: list[tuple[str, str, float, dict[str, Any], float]] = [
            (
                "churn",
                churn_bucket(ctx.churn),
                0.6 if ctx.churn > 10 else 0.4,
                {"commits": ctx.churn},
                0.9,
            ),
            ("age", age_bucket(ctx.age_days), 0.3, {"days": ctx.age_days or 0.0}, 0.9),
            (
                "past_fixes",
                fixes_bucket(ctx.past_fixes),
                0.8 if ctx.past_fixes else 0.4,
                {"count": ctx.past_fixes, "target_count": ctx.target_fixes},
                0.7,
            ),
            (
                "track_record",
                ctx.track_record,
                0.9 if ctx.fix_samples >= 10 else 0.5,
                {
                    "samples": ctx.fix_samples,
                    **({"success_rate": ctx.fix_rate} if ctx.fix_rate is not None else {}),
                },
                0.7,
            ),
        ]
        for aspect, value, relevance, extra, confidence in aspects:
            if already.get(ctx.target, {}).get(aspect) == value:
                continue
            payload = {
                "target": ctx.target,
                "aspect": aspect,
                "value": value,
                "relevance": relevance,
                "rule": ctx.rule,
                "proposal": pid,
                **extra,
            }
            drafts.append(draft("context_enrichment", payload, confidence, "low"))
    return drafts


def knowledge_retrievals(result: RecallResult) -> list[Draft]:
    """One ``knowledge_retrieval`` draft per lookup kind (stable ``query`` strings)."""
    return [
        draft(
            "knowledge_retrieval",
            {
                "query": r.query,
                "hit_rate": round(r.hit_rate, 4),
                "latency_ms": max(0.0, r.latency_ms),
                "results": r.results,
                "queries": r.queries,
            },
            0.9,
            "low",
        )
        for r in result.retrievals
    ]


def context_index(items: Iterable[Any]) -> dict[str, dict[str, str]]:
    """``{target: {aspect: value}}`` from ``context_enrichment`` items (later items win)."""
    index: dict[str, dict[str, str]] = defaultdict(dict)
    for payload, _ in iter_payloads(items, "context_enrichment"):
        index[str(payload.get("target"))][str(payload.get("aspect"))] = str(payload.get("value"))
    return dict(index)
