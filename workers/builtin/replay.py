"""Replay a repository's history through the five built-in workers and the real exchange.

At each commit (oldest first) the five workers run one cycle each, in pipeline order, on the
in-process transport: real broadcasts, queries, inboxes and acks in this project's database.
Think's predictions made at commit ``k-1`` are paired with the outcomes Learning observes at
``k``; the report gives the Brier score, the Brier skill against the prequential base rate,
AUC, calibration and bootstrap intervals of those pairs (``decision_quality``), what every
worker broadcast and received, conflicts, decisions, and the reception overhead (time spent
receiving and processing knowledge / cycle time).

With ``exchange=False`` the workers are cut off from each other's knowledge (each sees only its
own items): the baseline the benefit of the exchange is measured against. Run each mode on a
fresh database (``replay_history --db PATH``), or the second run starts from the first's items.

Conflicts: with exchange, the conflicts sweep (``conflicts.reliability.sweep``: trust
re-estimated from all the claims, then unsettled contradictions re-evaluated) runs every
``sweep_every`` commits and after the last one, as the ``sweep`` process does in production
(every 60 s; a replayed commit takes seconds). The report's ``conflicts`` section says what the
fleet's disagreements became: detected, resolved (in the broadcast or by a sweep), dismissed
or left for review, the items superseded, and their effect on Think's decisions.

Other projects (``prior_repos``): a fleet working on several projects shares what each
project's Learning learned. Each prior repository gets its own Learning worker, a separate
source named ``learning.<project>`` (kind ``learning``), which walks that repository's
first-parent history and broadcasts into the same exchange. Its commits are interleaved with
the target's by committer time: before the target's commit ``k`` (dated ``t_k``) each prior
Learning replays exactly its commits dated strictly before ``t_k``, so everything it has
broadcast when Think decides at ``k`` was observed before that decision in calendar time
(commits dated after the target's last replayed commit are never replayed). The prior workers
read nothing (``exchange=False``: they learn from their own project only); what they broadcast
is what a Learning worker broadcasts (``learned_pattern``, ``successful_fix``,
``pattern_evolution``, ``risk_pattern``). Without exchange the target's workers read only
their own items, so the prior projects are not replayed (they could change nothing).
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

from workers.builtin.repo import RepoView
from workers.builtin.workers import PIPELINE_ORDER, WORKER_CLASSES, LearningWorker, quality_of

#: Commits between two conflict sweeps in a replay (0: never).
SWEEP_EVERY = 10


def build_workers(view: RepoView, *, exchange: bool = True, on_analysed=None) -> dict[str, Any]:
    """The five workers on the in-process transport (creating their identities if missing)."""
    from identity.actions import do_ensure_builtin_workers
    from workers.inprocess import InProcessTransport

    do_ensure_builtin_workers()
    workers = {}
    for name in PIPELINE_ORDER:
        kw = {"on_done": on_analysed} if name == "analysis" and on_analysed else {}
        workers[name] = WORKER_CLASSES[name](
            InProcessTransport(name), view=view, exchange=exchange, **kw
        )
    return workers


class PriorProject:
    """Learning on another project, in the same exchange under its own source name, advanced
    in calendar order with the target's history (see the module docstring)."""

    def __init__(self, path: str, *, until: int, commits: int | None = None):
        from identity.actions import do_create_worker
        from identity.models import Worker
        from workers.inprocess import InProcessTransport

        self.view = RepoView(path)
        self.source = prior_source_name(self.view.path)
        if not Worker.objects.filter(name=self.source).exists():
            do_create_worker(self.source, "learning", f"Learning on {self.view.path}")
        # only commits dated before the target's last replayed commit can precede a decision
        history = [c for c in self.view.commits() if c.timestamp < until]
        self.history = history[-commits:] if commits else history
        self.worker = LearningWorker(
            InProcessTransport(self.source), view=self.view, exchange=False
        )
        self.done = 0
        self.failed_cycles = 0

    def advance(self, before: int) -> int:
        """Replay this project's commits dated strictly before ``before`` (unix seconds) that
        are not replayed yet; returns how many."""
        start = self.done
        while self.done < len(self.history) and self.history[self.done].timestamp < before:
            self.failed_cycles += not self.worker.run_cycle(commit=self.history[self.done])
            self.done += 1
        return self.done - start

    def report(self) -> dict[str, Any]:
        replayed = self.history[: self.done]
        return {
            "repo": self.view.path,
            "source": self.source,
            "commits": len(replayed),
            "first_commit": replayed[0].sha if replayed else None,
            "first_commit_time": replayed[0].timestamp if replayed else None,
            "last_commit": replayed[-1].sha if replayed else None,
            "last_commit_time": replayed[-1].timestamp if replayed else None,
            "failed_cycles": self.failed_cycles,
            "cycle_seconds": round(self.worker.stats.cycle_seconds, 3),
            "outcomes": dict(sorted(self.worker.outcome_counts.items())),
            "broadcast_by_type": dict(sorted(self.worker.stats.broadcast_by_type.items())),
        }


def prior_source_name(path: str) -> str:
    """``learning.<project>``: the name of the Learning worker of another project."""
    base = re.sub(r"[^a-z0-9_.-]+", "-", Path(path).name.lower()).strip("-.") or "project"
    return f"learning.{base}"[:64]


def replay_history(
    repo: str,
    *,
    commits: int | None = None,
    exchange: bool = True,
    progress: bool = False,
    sweep_every: int = SWEEP_EVERY,
    prior_repos: list[str] | tuple[str, ...] = (),
    prior_commits: int | None = None,
) -> dict[str, Any]:
    """Replay ``repo`` (see the module docstring); ``prior_repos`` are other projects whose
    Learning broadcasts into the same exchange first, in calendar order (the last
    ``prior_commits`` of their commits dated before the target's last replayed commit)."""
    from knowledge.models import KnowledgeItem
    from workers.actions import do_mark_analysed, do_register_project

    started = time.perf_counter()
    view = RepoView(repo)
    project = do_register_project(view.path)
    items_before = KnowledgeItem.objects.count()
    workers = build_workers(
        view, exchange=exchange, on_analysed=lambda sha: do_mark_analysed(project, sha)
    )
    history = view.commits(commits)
    priors = _priors(view, history, prior_repos if exchange else (), prior_commits)
    iterator: Any = history
    if progress:
        from tqdm import tqdm

        mode = "exchange" if exchange else "no exchange"
        iterator = tqdm(history, desc=f"replay ({mode})", unit="commit", file=sys.stderr)
    think, learning = workers["think"], workers["learning"]
    sweeper = _Sweeper(sweep_every if exchange else 0)
    failed_cycles, records, conflicts = _run_pipeline(workers, iterator, sweeper, priors)

    from conflicts import models as conflict_models

    conflict_model = getattr(conflict_models, "Conflict", None)
    per_worker = {name: _worker_report(worker.stats) for name, worker in workers.items()}
    total_cycle = sum(worker.stats.cycle_seconds for worker in workers.values())
    total_reception = sum(worker.stats.reception_seconds for worker in workers.values())
    elapsed = time.perf_counter() - started
    return {
        "repo": view.path,
        "project": project.name,
        "exchange": exchange,
        "commits": len(history),
        "first_commit": history[0].sha if history else None,
        "last_commit": history[-1].sha if history else None,
        "items_before": items_before,
        "items_after": KnowledgeItem.objects.count(),
        "failed_cycles": failed_cycles,
        "workers": per_worker,
        "outcomes": dict(sorted(learning.outcome_counts.items())),
        "decisions": dict(sorted(think.decisions.items())),
        "conflicts": {
            **_conflict_counts(conflict_model, conflicts, think),
            **_resolution_counts(),
            "sweeps": sweeper.report(),
        },
        "decision_quality": quality_of(records),
        "prior_projects": [
            {**prior.report(), "seen_by_think": _seen_by(think, prior.source)} for prior in priors
        ],
        "decision_quality_seen_by_learning": learning.decision_quality(),
        "reception_overhead": {
            "ratio": round(total_reception / total_cycle, 4) if total_cycle else 0.0,
            "reception_seconds": round(total_reception, 3),
            "cycle_seconds": round(total_cycle, 3),
        },
        "seconds": round(elapsed, 2),
        "ms_per_commit": round(1000 * elapsed / max(len(history), 1), 1),
    }


def _priors(view, history, prior_repos, prior_commits) -> list[PriorProject]:
    """The other projects to replay first, refused when one is the target or two share a name."""
    priors: list[PriorProject] = []
    for path in prior_repos if history else ():
        prior = PriorProject(path, until=history[-1].timestamp, commits=prior_commits)
        if prior.view.path == view.path:
            raise ValueError(f"prior repository {path!r} is the replayed repository itself")
        if any(p.source == prior.source for p in priors):
            raise ValueError(f"two prior repositories are named {prior.source!r}")
        priors.append(prior)
    return priors


class _Sweeper:
    """The conflicts sweep every ``every`` commits (0: never), counting what it settled."""

    def __init__(self, every: int):
        self.every = every
        self.runs = 0
        self.reevaluated = 0
        self.auto_resolved = 0
        self.dismissed = 0

    def after(self, index: int, *, last: bool = False) -> None:
        if self.every <= 0 or not (last or (index + 1) % self.every == 0):
            return
        from conflicts.choices import ConflictStatus
        from conflicts.models import Conflict
        from conflicts.reliability import sweep

        def count(status: str) -> int:
            return Conflict.objects.filter(status=status).count()

        auto, dismissed = count(ConflictStatus.AUTO_RESOLVED), count(ConflictStatus.DISMISSED)
        self.reevaluated += sweep()
        self.runs += 1
        self.auto_resolved += count(ConflictStatus.AUTO_RESOLVED) - auto
        self.dismissed += count(ConflictStatus.DISMISSED) - dismissed

    def report(self) -> dict[str, int]:
        return {
            "every_commits": self.every,
            "runs": self.runs,
            "reevaluated": self.reevaluated,
            "auto_resolved": self.auto_resolved,
            "dismissed": self.dismissed,
        }


def _run_pipeline(
    workers: dict, commits, sweeper: _Sweeper | None = None, priors=()
) -> tuple[int, list[tuple[float, int, int]], set[int]]:
    """Every worker's cycle at each commit, in pipeline order, and the conflicts sweep when it
    is due; before each commit, the other projects' Learning up to that commit's date.
    Returns the failed cycles, Think's (predicted, observed, commit index) pairs as Learning
    saw the outcomes, and the conflicts the workers were told about."""
    think, learning = workers["think"], workers["learning"]
    records: list[tuple[float, int, int]] = []
    failed_cycles = 0
    index = -1
    for index, commit in enumerate(commits):
        predictions = dict(think.predictions)  # made at the previous commit
        for prior in priors:  # what other projects' Learning observed before this commit
            prior.advance(commit.timestamp)
        for name in PIPELINE_ORDER:
            failed_cycles += not workers[name].run_cycle(commit=commit)
        records.extend((p, o, index) for p, o in _pairs(learning.outcomes, predictions))
        if sweeper is not None:
            sweeper.after(index)
    if sweeper is not None and index >= 0 and (index + 1) % max(sweeper.every, 1):
        sweeper.after(index, last=True)
    conflicts: set[int] = set()
    for worker in workers.values():  # deliver what the last commit produced
        worker.receive()
        conflicts.update(c for e in worker.conflict_log for c in _conflict_ids(e))
    return failed_cycles, records, conflicts


def _seen_by(worker, source: str) -> dict[str, int]:
    """Items of ``source`` in ``worker``'s local view, by type."""
    counts: dict[str, int] = {}
    for src, kind, _ in worker.knowledge:
        if src == source:
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def _worker_report(stats) -> dict[str, Any]:
    """One worker's line of the replay report."""
    return {
        "cycles": stats.cycles,
        "errors": stats.errors,
        "last_error": stats.last_error,
        "broadcast": stats.broadcast,
        "broadcast_by_type": dict(sorted(stats.broadcast_by_type.items())),
        "unchanged_skipped": stats.unchanged_skipped,
        "overruled_skipped": stats.overruled_skipped,
        "received": stats.received,
        "received_by_type": dict(sorted(stats.received_by_type.items())),
        "conflict_events": stats.conflict_events,
        "cycle_seconds": round(stats.cycle_seconds, 3),
        "reception_seconds": round(stats.reception_seconds, 3),
        "query_seconds": round(stats.query_seconds, 3),
        "broadcast_seconds": round(stats.broadcast_seconds, 3),
        "reception_overhead": round(stats.reception_overhead, 4),
    }


def _conflict_counts(model, seen: set[int], think) -> dict[str, Any]:
    """Conflicts stored (by status, classification, type), those the workers were told about,
    and their effect on Think's decisions (decisions that differ from what Think would have
    decided had it kept the items the resolutions superseded)."""
    from django.db.models import Count

    out: dict[str, Any] = {"seen_by_workers": len(seen), "stored": None}
    if model is not None:
        out["stored"] = model.objects.count()
        for field in ("status", "classification", "knowledge_type"):
            rows = model.objects.values_list(field).annotate(n=Count("id")).order_by(field)
            out[f"by_{field}"] = {str(value): n for value, n in rows}
    effect = {
        k: round(v, 4) if isinstance(v, float) else v for k, v in think.conflict_effect.items()
    }
    if effect.get("risk_changed"):
        effect["mean_risk_shift"] = round(effect["risk_shift_sum"] / effect["risk_changed"], 4)
    effect["decision_changes"] = dict(sorted(think.decision_changes.items()))
    out["effect_on_think"] = dict(sorted(effect.items()))
    return out


def _resolution_counts() -> dict[str, Any]:
    """The decisions taken on the fleet's conflicts (``Resolution`` rows by actor and decision)
    and the items they superseded."""
    from django.db.models import Count

    from conflicts.models import Resolution

    rows = Resolution.objects.values_list("actor", "decision").annotate(n=Count("id"))
    superseded = sum(
        len(ids) for ids in Resolution.objects.values_list("superseded_item_ids", flat=True)
    )
    return {
        "resolutions": {f"{actor}:{decision}": n for actor, decision, n in sorted(rows)},
        "superseded_items": superseded,
    }


def _pairs(outcomes, predictions: dict[str, float]) -> list[tuple[float, int]]:
    from workers.engine.learning import pair_outcomes

    return pair_outcomes(outcomes, predictions)


def _conflict_ids(event: dict) -> list[int]:
    data = event.get("data") or {}
    ids = []
    for key in ("conflict", "conflict_id", "id"):
        value = data.get(key)
        if isinstance(value, int):
            ids.append(value)
        elif isinstance(value, dict) and isinstance(value.get("id"), int):
            ids.append(value["id"])
    return ids


def compare(with_report: dict, without_report: dict) -> dict[str, Any]:
    """The benefit of the exchange: Brier skill (against the base rate) and AUC in both modes,
    the skill gained, and the relative Brier improvement."""
    a, b = with_report["decision_quality"], without_report["decision_quality"]
    out: dict[str, Any] = {"with_exchange": a, "without_exchange": b}
    if a.get("brier") is not None and b.get("brier"):
        out["brier_improvement"] = round(1 - a["brier"] / b["brier"], 4)
        out["accuracy_gain"] = round(a["accuracy"] - b["accuracy"], 4)
        out["skill_gain"] = round(a["brier_skill"] - b["brier_skill"], 4)
    return out
