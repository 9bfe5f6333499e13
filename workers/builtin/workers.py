"""The five built-in workers: thin ``BaseWorker`` subclasses that call ``workers.engine``.

Each cycle a worker drains its inbox (``process_received_knowledge`` keeps its local view of
knowledge up to date), queries the types ORIGINAL_PLAN.md names for it, and, when the commit it
works on changed (``HEAD`` live; the replayed commit in ``replay_history``), runs its engine
step and broadcasts in bulk only what changed, with idempotency keys derived from the commit
and the item, so retries and restarts never duplicate.

Per commit ``k`` (the order ``replay_history`` runs them in, as ``workers.engine.replay``):
Learning observes ``k-1 -> k``; Analysis retunes and analyses ``k``; Dream proposes; Recall
enriches; Think predicts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from kx_sdk.worker import BaseWorker, body_digest
from workers.builtin.repo import RepoView
from workers.engine.analysis import (
    code_risk_patterns,
    complexity_trends,
    issue_patterns,
    rule_counts,
)
from workers.engine.calibration import forecast_report
from workers.engine.dream import proposal_qualities, propose
from workers.engine.gitrepo import Commit
from workers.engine.knowledge import KNOWLEDGE_CONTRACTS, subject_of
from workers.engine.learning import (
    FixRates,
    ObservedRisk,
    Outcome,
    observe,
    pair_outcomes,
    pattern_evolutions,
    predictions_from,
    successful_fixes,
)
from workers.engine.recall import churn_bucket, context_enrichments, knowledge_retrievals, recall
from workers.engine.rules import Rules
from workers.engine.think import assess, decision_outcomes, risk_patterns


def quality_of(records: list[tuple[float, int, int]]) -> dict[str, Any]:
    """Think's forecasts scored: ``records`` are ``(predicted, observed, step)``.

    Brier score, Brier skill against the prequential base rate (``reference_brier`` is the
    base-rate forecast's Brier), AUC, accuracy, ECE, the outcome rate (``base_rate``), the
    calibration table, and 95 % bootstrap intervals (1,000 seeded resamples of the decisions)
    under ``ci``; ``n`` records (see :func:`workers.engine.calibration.forecast_report`).
    """
    if not records:
        return {"n": 0, "brier": None, "brier_skill": None, "auc": None, "accuracy": None}
    report = forecast_report(records)
    bins = [
        {
            "range": [round(b["lower"], 2), round(b["upper"], 2)],
            "n": b["count"],
            "predicted": round(b["mean_predicted"], 4),
            "observed": round(b["observed_rate"], 4),
        }
        for b in report.pop("bins")
        if b["count"]
    ]
    ci = report.pop("ci")
    out = {k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()}
    out["n"] = out.pop("pairs")
    out["ci"] = {k: None if v is None else [round(x, 4) for x in v] for k, v in ci.items()}
    out["calibration"] = bins
    out["after_first_commit"] = _after_first_commit(records)
    return out


def _after_first_commit(records: list[tuple[float, int, int]]) -> dict[str, Any] | None:
    """The scores without the decisions of the first scored commit, where the base-rate
    forecast knows no outcome yet and says 0.5 (see ``forecast_report``'s ``burn_in``)."""
    if len({step for _, _, step in records}) < 2:
        return None
    report = forecast_report(records, burn_in=1)
    keys = ("brier", "reference_brier", "brier_skill", "auc")
    out: dict[str, Any] = {k: None if report[k] is None else round(report[k], 4) for k in keys}
    out["n"] = report["pairs"]
    out["ci"] = {
        k: None if v is None else [round(x, 4) for x in v] for k, v in report["ci"].items()
    }
    return out


HISTORY_PACE_SECONDS = 5.0


class RepoWorker(BaseWorker):
    """A built-in worker on a git checkout (see the module docstring).

    ``interests``: what the worker keeps in its local view (and subscribes to);
    ``queries``: what it queries right before its step (ORIGINAL_PLAN.md, Day 3);
    ``produces``: its own types, loaded back from the exchange at start so a restart does not
    re-broadcast what is already there.
    """

    interval = 30.0
    queries: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()

    def __init__(
        self,
        transport,
        *,
        view: RepoView,
        on_done: Callable[[str], None] | None = None,
        history: int = 0,
        **kw,
    ):
        super().__init__(transport, **kw)
        self.view = view
        self.on_done = on_done
        self.commit: Commit | None = None
        self.previous: Commit | None = None
        self.commits_done = 0
        # ``history`` > 0: the first cycles walk the last ``history`` commits up to HEAD, one
        # per cycle (oldest first), so a fresh fleet has work at once; then HEAD as it moves.
        self.backlog: list[Commit] = view.commits(max_count=history) if history > 0 else []
        self.last_action = "starting"

    def setup(self) -> None:
        super().setup()
        if self.exchange and self.interests:
            self.refresh_knowledge(self.interests)
        if self.produces:
            for item in self.query_knowledge(list(self.produces), sources=[self.name]):
                self.note_sent(item)

    def rules(self) -> Rules:
        """Analysis's rules as this worker can know them: the defaults retuned by the
        ``learned_pattern`` items it holds (the same for every worker that sees them)."""
        return Rules().retune(self.known(["learned_pattern", "pattern_evolution"]))

    def key_for(self, commit: Commit) -> Callable[[dict], str]:
        def key(body: dict) -> str:
            return f"{self.name}:{commit.sha[:12]}:{body_digest(body)[:40]}"

        return key

    def step(self, commit: Commit | None = None, **_: Any) -> None:
        if self.exchange and self.queries:
            self.refresh_knowledge(self.queries)
        if commit is None and self.backlog:
            commit = self.backlog.pop(0)
            self.last_action = f"history commit {commit.sha[:10]} ({len(self.backlog)} to go)"
        else:
            commit = commit or self.view.head()
            self.last_action = f"commit {commit.sha[:10]}" if commit else "no commit"
        if commit is None or (self.commit is not None and commit.sha == self.commit.sha):
            # nothing new to work on; the inbox was still processed
            self.last_action = (
                f"waiting for a new commit (HEAD {commit.sha[:10]} done)" if commit else "no commit"
            )
            return
        self.work(commit)
        self.previous, self.commit = self.commit, commit
        self.commits_done += 1
        if self.on_done is not None:
            self.on_done(commit.sha)

    def work(self, commit: Commit) -> None:
        raise NotImplementedError

    def next_delay(self) -> float:
        # While walking the history, a commit every few seconds: work shows at once.
        delay = super().next_delay()
        return min(delay, HISTORY_PACE_SECONDS) if self.backlog else delay

    def run_cycle(self, **context: Any) -> bool:
        """One cycle, and one log line saying what it did (or why it did nothing)."""
        before = (self.stats.broadcast, self.stats.received)
        ok = super().run_cycle(**context)
        self.log.info(
            "%s: cycle %d %s: %s, %d broadcast, %d received, %.2fs",
            self.name,
            self.stats.cycles,
            "ok" if ok else "FAILED",
            self.last_action,
            self.stats.broadcast - before[0],
            self.stats.received - before[1],
            self.stats.last_cycle_seconds,
        )
        return ok

    def publish(self, commit: Commit, drafts: Iterable[Any]) -> list[dict]:
        return self.broadcast_many(drafts, key=self.key_for(commit))

    def claim_of(self, body: dict) -> tuple[str, str] | None:
        """Subject and claim as the registry derives them (the engine's contracts): with
        them the SDK does not restate a claim a resolution overruled on that subject until
        this worker's evidence moves it to another claim (``restates_overruled``)."""
        contract = KNOWLEDGE_CONTRACTS.get(body["knowledge_type"])
        if contract is None:
            return None
        payload = body["payload"]
        claim = str(payload.get(contract.claim, "")).strip().lower()
        return subject_of(body["knowledge_type"], payload), claim

    def on_conflict_event(self, event: dict) -> None:
        """Keep the event (``conflict_log``). Unlike the SDK's default, a built-in worker does
        not re-send everything after a conflict: it states a claim again when its evidence
        changes (the next commit), not because the claim lost; and a claim a resolution
        overruled is not restated until its evidence moves it to another level
        (:meth:`claim_of`)."""
        self.conflict_log.append(event)
        del self.conflict_log[:-100]

    def state_document(self) -> dict[str, Any]:
        return {
            "commit": self.commit.sha if self.commit else None,
            "commits_done": self.commits_done,
            "knowledge_view": len(self.knowledge),
        }


class AnalysisWorker(RepoWorker):
    """Parses the commit's Python files (ast), applies the rules retuned from ``learned_pattern``;
    broadcasts new or changed ``issue_pattern`` and the ``complexity_trend`` per scope."""

    interests = ("learned_pattern", "pattern_evolution")
    queries = ("learned_pattern",)
    produces = ("issue_pattern", "complexity_trend", "risk_pattern")

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.snapshot = None
        self.retunes = 0

    def update_pattern_models(self, items: list[dict]) -> None:
        self.retunes += 1  # the rules are rebuilt from the local view at the next commit

    def work(self, commit: Commit) -> None:
        rules = self.rules()
        snap = self.view.snapshot(commit, rules)
        drafts = issue_patterns(snap, known=self.known(["issue_pattern"], own=True))
        drafts += complexity_trends(snap, self.snapshot)
        stats = self.view.file_stats(commit, self.commit)
        drafts += code_risk_patterns(
            snap, {path: churn_bucket(s.churn) for path, s in stats.items()}
        )
        self.publish(commit, drafts)
        self.snapshot = snap

    def state_document(self) -> dict[str, Any]:
        doc = super().state_document()
        if self.snapshot is not None:
            doc.update(issues=len(self.snapshot.issues), files=self.snapshot.files)
        doc["rules_notes"] = list(self.rules().notes)[-10:]
        return doc


DREAM_INTERESTS = (
    "issue_pattern",
    "complexity_trend",
    "learned_pattern",
    "proposal_quality",
    "successful_fix",
)


class DreamWorker(RepoWorker):
    """Ranks improvement proposals for the issues; broadcasts ``proposal_quality`` per kind."""

    interests = DREAM_INTERESTS
    queries = ("issue_pattern", "complexity_trend")
    produces = ("proposal_quality",)

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.proposals: list = []

    def work(self, commit: Commit) -> None:
        rules = self.rules()
        knowledge = self.known(DREAM_INTERESTS)
        self.proposals = propose(self.view.snapshot(commit, rules).issues.values(), knowledge)
        self.publish(commit, proposal_qualities(self.proposals, knowledge))

    def state_document(self) -> dict[str, Any]:
        doc = super().state_document()
        doc["proposals"] = len(self.proposals)
        doc["top"] = [p.id for p in self.proposals[:5]]
        return doc


RECALL_INTERESTS = (
    "context_enrichment",
    "knowledge_retrieval",
    "successful_fix",
    "learned_pattern",
)


class RecallWorker(RepoWorker):
    """Context (churn, age, past fixes, track record) for each proposal's target."""

    interests = RECALL_INTERESTS
    queries = ("context_enrichment",)
    produces = ("context_enrichment", "knowledge_retrieval")

    def work(self, commit: Commit) -> None:
        proposals = self.view.proposals(commit, self.rules())
        stats = self.view.file_stats(commit, self.commit)
        received = self.known(RECALL_INTERESTS)
        result = recall(proposals, stats, received, now=commit.timestamp)
        drafts = context_enrichments(result, known=received) + knowledge_retrievals(result)
        self.publish(commit, drafts)


THINK_INTERESTS = (
    "learned_pattern",
    "issue_pattern",
    "successful_fix",
    "proposal_quality",
    "risk_pattern",
    "context_enrichment",
    "pattern_evolution",
)


class ThinkWorker(RepoWorker):
    """The committee: predicted success, risk and a decision per proposal; broadcasts changed
    ``decision_outcome`` items and ``risk_pattern`` per (rule, churn).

    Think observes the outcomes of its own predictions itself (the engine's ``observe`` on its
    previous and current snapshots): their rate is the base rate its forecasts start from, with
    or without exchange; what it receives (Learning's fix rates by rule and margin) moves them.
    """

    interests = THINK_INTERESTS
    queries = ("learned_pattern", "issue_pattern")
    produces = ("decision_outcome", "risk_pattern")

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.predictions: dict[str, float] = {}
        self.decisions: Counter = Counter()
        self.last_decisions: Counter = Counter()
        self.risk_updates = 0
        self.base = [0, 0]  # successes, samples of its own predictions' outcomes
        self._snapshot = None
        # superseded items it held, by (source, type, subject) until a newer one replaces them
        self.overruled: dict[tuple[str, str, str], dict] = {}
        self.conflict_effect: Counter = Counter()
        self.decision_changes: Counter = Counter()  # "without->with" the resolutions
        # items that reached it already superseded (a resolution in their own broadcast), by
        # id, until the conflict event says which resolution took them out
        self._arrived_superseded: dict[int, dict] = {}

    def update_risk_model(self, items: list[dict]) -> None:
        self.risk_updates += len(items)

    def remember(self, item: dict) -> None:
        super().remember(item)
        if item.get("status") == "superseded" and isinstance(item.get("id"), int):
            self._arrived_superseded[item["id"]] = dict(item)
            while len(self._arrived_superseded) > 200:
                del self._arrived_superseded[next(iter(self._arrived_superseded))]

    def on_conflict_event(self, event: dict) -> None:
        """A resolution supersedes items: drop them from the local view (they no longer count
        in the risk model), keeping them aside to measure what the resolution changed. An item
        the resolution superseded in its own broadcast arrives superseded and never entered the
        view: it is kept aside the same way (it would have counted without the resolution)."""
        super().on_conflict_event(event)
        data = event.get("data") or {}
        self.conflict_effect[str(event.get("event"))] += 1
        gone = {i for i in data.get("superseded_item_ids") or () if isinstance(i, int)}
        if not gone:
            return
        for key, item in list(self.knowledge.items()):
            if item.get("id") in gone:
                self.overruled[key] = self.knowledge.pop(key)
                self.conflict_effect["items_overruled"] += 1
        for item_id in sorted(gone & self._arrived_superseded.keys()):
            item = self._arrived_superseded.pop(item_id)
            key = (
                str(item.get("source")),
                str(item.get("knowledge_type")),
                str(item.get("subject")),
            )
            if key not in self.knowledge:
                self.overruled[key] = item
                self.conflict_effect["items_overruled"] += 1

    def _observe_own(self, commit: Commit, snap) -> None:
        if self._snapshot is None or self.commit is None or not self.predictions:
            return
        changed = self.view.changed_files(self.commit, commit)
        outcomes = observe(self._snapshot, snap, changed_files=changed)
        scored = pair_outcomes(outcomes, self.predictions)
        self.base[0] += sum(o for _, o in scored)
        self.base[1] += len(scored)

    def work(self, commit: Commit) -> None:
        rules = self.rules()
        snap = self.view.snapshot(commit, rules)
        self._observe_own(commit, snap)
        proposals = self.view.proposals(commit, rules)
        knowledge = self.known(THINK_INTERESTS)
        assessments = assess(proposals, knowledge, base=tuple(self.base))
        for key in [k for k in self.overruled if k in self.knowledge]:
            del self.overruled[key]  # its source has said something newer since
        if self.overruled:  # what the decisions would have been without the resolutions
            held = knowledge + [
                i for i in self.overruled.values() if i["knowledge_type"] in THINK_INTERESTS
            ]
            before = assess(proposals, held, base=tuple(self.base))
            pairs = list(zip(assessments, before, strict=True))
            self.conflict_effect["assessments_with_overruled_inputs"] += len(assessments)
            changed = [f"{b.decision}->{a.decision}" for a, b in pairs if a.decision != b.decision]
            self.conflict_effect["decisions_changed"] += len(changed)
            self.decision_changes.update(changed)
            # The resolutions move Think's risk even where the decision stays (most decisions
            # are ``reject`` on the forecast alone): how many, and by how much in all.
            shifts = [a.risk - b.risk for a, b in pairs if a.risk != b.risk]
            self.conflict_effect["risk_changed"] += len(shifts)
            self.conflict_effect["risk_shift_sum"] += sum(shifts)
            self.conflict_effect["utility_shift_sum"] += sum(
                a.utility - b.utility for a, b in pairs
            )
        drafts = decision_outcomes(assessments, known=self.known(["decision_outcome"], own=True))
        drafts += risk_patterns(assessments)
        self.publish(commit, drafts)
        self.predictions = {a.proposal_id: a.predicted_success for a in assessments}
        self.last_decisions = Counter(a.decision for a in assessments)
        self.decisions.update(self.last_decisions)
        self._snapshot = snap

    def state_document(self) -> dict[str, Any]:
        doc = super().state_document()
        doc["decisions"] = dict(self.last_decisions)
        doc["base"] = {"successes": self.base[0], "samples": self.base[1]}
        doc["conflict_effect"] = dict(self.conflict_effect)
        return doc


class LearningWorker(RepoWorker):
    """Observes what happened to each issue since the previous commit; broadcasts
    ``successful_fix``, ``learned_pattern`` (fix rates), ``pattern_evolution`` and
    ``risk_pattern`` (its view of risk from what the observed changes did: a third opinion,
    on other evidence than Analysis's and Think's), and scores Think's ``decision_outcome``
    predictions (Brier score) as it sees them in the exchange."""

    interests = ("decision_outcome", "risk_pattern")
    queries = ("decision_outcome", "risk_pattern")
    produces = ("successful_fix", "learned_pattern", "pattern_evolution", "risk_pattern")

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.rates = FixRates()
        self.risk = ObservedRisk()
        self.history: list[dict[str, int]] = []
        self.snapshot = None
        self.context: dict[str, dict[str, str]] = {}
        self.outcomes: list[Outcome] = []
        self.outcome_counts: Counter = Counter()
        # Think's predictions from the exchange, scored: (predicted, observed, commit index)
        self.scored: list[tuple[float, int, int]] = []

    def work(self, commit: Commit) -> None:
        snap = self.view.snapshot(commit, self.rules())
        self.outcomes = []
        if self.snapshot is not None and self.commit is not None:
            changed = self.view.changed_files(self.commit, commit)
            self.outcomes = observe(
                self.snapshot, snap, changed_files=changed, contexts=self.context
            )
            self.outcome_counts.update(o.status for o in self.outcomes)
            predictions = predictions_from(self.known(["decision_outcome"]))
            self.scored.extend(
                (p, o, self.commits_done) for p, o in pair_outcomes(self.outcomes, predictions)
            )
            self.rates.add(self.outcomes)
            self.risk.add(self.outcomes)
        self.history.append(rule_counts(snap))
        del self.history[:-50]
        drafts = successful_fixes(self.outcomes) + self.rates.learned_patterns()
        drafts += pattern_evolutions(self.history)
        drafts += self.risk.risk_patterns()
        self.publish(commit, drafts)
        stats = self.view.file_stats(commit, self.commit)
        self.context = {path: {"churn": churn_bucket(s.churn)} for path, s in stats.items()}
        self.snapshot = snap

    def decision_quality(self) -> dict[str, Any]:
        if not self.scored:
            return {"n": 0}
        return quality_of(self.scored)

    def state_document(self) -> dict[str, Any]:
        doc = super().state_document()
        doc["outcomes"] = dict(self.outcome_counts)
        doc["decision_quality"] = self.decision_quality()
        return doc


WORKER_CLASSES: dict[str, type[RepoWorker]] = {
    "learning": LearningWorker,
    "analysis": AnalysisWorker,
    "dream": DreamWorker,
    "recall": RecallWorker,
    "think": ThinkWorker,
}
PIPELINE_ORDER = ("learning", "analysis", "dream", "recall", "think")
