"""Replay a repository's history through the five engines, with or without knowledge exchange,
and score Think's predictions against what Learning observes (Brier score).

This is the Django-free reference of the product's measurement: an in-memory
:class:`KnowledgeStore` stands in for the exchange (latest item per type and subject, like a
source refreshing its own item). With ``exchange=False`` no worker receives anything from the
others; each keeps only its own memory (what it published itself, Learning's counts).

Per commit ``k``: Learning observes ``k-1 -> k`` and publishes; Analysis retunes and analyses
``k``; Dream proposes; Recall enriches; Think predicts. Outcomes observed at ``k`` are paired
with the predictions made at ``k-1``.

CLI: ``python -m workers.engine.replay REPO [--commits N] [--all-parents]`` prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from .analysis import Analyzer, Snapshot, complexity_trends, issue_patterns, rule_counts
from .calibration import brier_improvement, forecast_report
from .dream import proposal_qualities, propose
from .gitrepo import FileStats, GitRepo
from .knowledge import Draft, subject_of
from .learning import (
    FixRates,
    ObservedRisk,
    observe,
    pair_outcomes,
    pattern_evolutions,
    successful_fixes,
)
from .recall import churn_bucket, context_enrichments, knowledge_retrievals, recall
from .rules import Rules
from .think import assess, decision_outcomes, risk_patterns

# What each worker reads from the exchange (DESIGN.md section 4, "interested"; Recall also
# queries fixes and learned patterns explicitly).
INTERESTS = {
    "analysis": ("learned_pattern", "pattern_evolution"),
    "dream": (
        "issue_pattern",
        "complexity_trend",
        "learned_pattern",
        "proposal_quality",
        "successful_fix",
    ),
    "recall": ("context_enrichment", "knowledge_retrieval", "successful_fix", "learned_pattern"),
    "think": (
        "learned_pattern",
        "issue_pattern",
        "successful_fix",
        "proposal_quality",
        "risk_pattern",
        "context_enrichment",
        "pattern_evolution",
    ),
}


class KnowledgeStore:
    """In-memory exchange: the latest draft per (source, type, subject).

    With ``exchange`` off a worker only gets back what it published itself (its own memory).
    """

    def __init__(self, *, exchange: bool = True) -> None:
        self.exchange = exchange
        self._items: dict[tuple[str, str, str], Draft] = {}
        self.published: dict[str, int] = {}

    def publish(self, source: str, drafts: Iterable[Draft]) -> None:
        for item in drafts:
            subject = subject_of(item.knowledge_type, item.payload)
            self._items[(source, item.knowledge_type, subject)] = item
            self.published[item.knowledge_type] = self.published.get(item.knowledge_type, 0) + 1

    def for_worker(self, worker: str, types: Iterable[str] | None = None) -> list[Draft]:
        wanted = set(INTERESTS.get(worker, ()) if types is None else types)
        return [
            d
            for (source, kind, _), d in self._items.items()
            if kind in wanted and (self.exchange or source == worker)
        ]


@dataclass
class ReplayReport:
    exchange: bool
    commits: int
    pairs: list[tuple[float, int, int]] = field(default_factory=list)  # (p, outcome, step)
    outcomes: dict[str, int] = field(default_factory=dict)
    published: dict[str, int] = field(default_factory=dict)
    analysis_seconds: float = 0.0
    total_seconds: float = 0.0
    parsed_files: int = 0
    rules_notes: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "exchange": self.exchange,
            "commits": self.commits,
            "outcomes": self.outcomes,
            "published": self.published,
            "analysis_seconds": round(self.analysis_seconds, 3),
            "analysis_ms_per_commit": round(1000 * self.analysis_seconds / max(self.commits, 1), 2),
            "total_seconds": round(self.total_seconds, 3),
            "parsed_files": self.parsed_files,
            "rules_notes": list(self.rules_notes),
        }
        if self.pairs:
            report = forecast_report(self.pairs)
            report.pop("bins")
            ci = report.pop("ci")
            data["calibration"] = {
                k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()
            }
            data["calibration"]["ci"] = ci
        return data


def _advance_stats(
    stats: dict[str, FileStats], changed: Iterable[str], ts: int
) -> dict[str, FileStats]:
    stats = dict(stats)
    for path in changed:
        old = stats.get(path)
        stats[path] = (
            FileStats(path, 1, ts, ts)
            if old is None
            else replace(
                old,
                churn=old.churn + 1,
                first_time=min(old.first_time, ts),
                last_time=max(old.last_time, ts),
            )
        )
    return stats


def replay(
    repo: GitRepo,
    *,
    max_commits: int | None = None,
    exchange: bool = True,
    first_parent: bool = True,
    rules: Rules | None = None,
    analyzer: Analyzer | None = None,
) -> ReplayReport:
    """Run the pipeline over the last ``max_commits`` commits (oldest first)."""
    started = time.perf_counter()
    commits = repo.commits(max_count=max_commits, first_parent=first_parent)
    analyzer = analyzer or Analyzer()
    analyzer.rules = rules or Rules()
    store = KnowledgeStore(exchange=exchange)
    report = ReplayReport(exchange=exchange, commits=len(commits))
    rates, risk = FixRates(), ObservedRisk()
    history: list[dict[str, int]] = []
    parsed_before = analyzer.stats["parsed"]

    prev: Snapshot | None = None
    prev_context: dict[str, dict[str, str]] = {}
    predictions: dict[str, float] = {}
    base = [0, 0]  # successes, samples of Think's own predictions (known in both modes)
    stats: dict[str, FileStats] = {}
    for index, commit in enumerate(commits):
        changed = None
        if index == 0:
            stats = repo.file_stats(commit.sha)
        else:
            changed = repo.changed_files(commits[index - 1].sha, commit.sha)
            stats = _advance_stats(stats, changed, commit.timestamp)

        # Analysis (retunes from what Learning published so far)
        analyzer.rules = analyzer.rules.retune(store.for_worker("analysis"))
        t0 = time.perf_counter()
        snap = analyzer.analyze_commit(repo, commit.sha, timestamp=commit.timestamp)
        report.analysis_seconds += time.perf_counter() - t0

        # Learning: outcomes of prev's issues, paired with Think's predictions made at prev
        if prev is not None:
            outcomes = observe(prev, snap, changed_files=changed, contexts=prev_context)
            for o in outcomes:
                report.outcomes[o.status] = report.outcomes.get(o.status, 0) + 1
            scored = pair_outcomes(outcomes, predictions)
            report.pairs.extend((p, o, index) for p, o in scored)
            base = [base[0] + sum(o for _, o in scored), base[1] + len(scored)]  # Think's own
            rates.add(outcomes)
            risk.add(outcomes)
            store.publish("learning", successful_fixes(outcomes))
        history.append(rule_counts(snap))
        learned = rates.learned_patterns() + pattern_evolutions(history) + risk.risk_patterns()
        store.publish("learning", learned)

        own = store.for_worker("analysis", ["issue_pattern"])
        store.publish("analysis", issue_patterns(snap, known=own))
        store.publish("analysis", complexity_trends(snap, prev))

        proposals = propose(snap.issues.values(), store.for_worker("dream"))
        store.publish("dream", proposal_qualities(proposals, store.for_worker("dream")))

        received = store.for_worker("recall")
        recalled = recall(proposals, stats, received, now=commit.timestamp)
        store.publish("recall", context_enrichments(recalled, known=received))
        store.publish("recall", knowledge_retrievals(recalled))

        assessments = assess(proposals, store.for_worker("think"), base=(base[0], base[1]))
        own = store.for_worker("think", ["decision_outcome"])
        store.publish("think", decision_outcomes(assessments, known=own))
        store.publish("think", risk_patterns(assessments))

        predictions = {a.proposal_id: a.predicted_success for a in assessments}
        prev_context = {path: {"churn": churn_bucket(s.churn)} for path, s in stats.items()}
        prev = snap

    report.published = dict(sorted(store.published.items()))
    report.parsed_files = analyzer.stats["parsed"] - parsed_before
    report.rules_notes = analyzer.rules.notes
    report.total_seconds = time.perf_counter() - started
    return report


def compare(repo: GitRepo, *, max_commits: int | None = None, first_parent: bool = True) -> dict:
    """Replay without and with exchange; report both and the relative Brier improvement."""
    analyzer = Analyzer()
    without = replay(
        repo, max_commits=max_commits, exchange=False, first_parent=first_parent, analyzer=analyzer
    )
    with_ = replay(
        repo, max_commits=max_commits, exchange=True, first_parent=first_parent, analyzer=analyzer
    )
    result: dict[str, Any] = {
        "without_exchange": without.summary(),
        "with_exchange": with_.summary(),
    }
    if without.pairs and with_.pairs:
        result["brier_improvement"] = round(
            brier_improvement([p[:2] for p in with_.pairs], [p[:2] for p in without.pairs]), 4
        )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo")
    parser.add_argument("--commits", type=int, default=None, help="replay the last N commits")
    parser.add_argument("--all-parents", action="store_true", help="do not use --first-parent")
    args = parser.parse_args(argv)
    result = compare(
        GitRepo(args.repo), max_commits=args.commits, first_parent=not args.all_parents
    )
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
