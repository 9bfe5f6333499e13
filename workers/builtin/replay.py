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
"""

from __future__ import annotations

import sys
import time
from typing import Any

from workers.builtin.repo import RepoView
from workers.builtin.workers import PIPELINE_ORDER, WORKER_CLASSES, quality_of

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


def replay_history(
    repo: str,
    *,
    commits: int | None = None,
    exchange: bool = True,
    progress: bool = False,
    sweep_every: int = SWEEP_EVERY,
) -> dict[str, Any]:
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

    iterator: Any = history
    if progress:
        from tqdm import tqdm

        iterator = tqdm(
            history,
            desc=f"replay ({'exchange' if exchange else 'no exchange'})",
            unit="commit",
            file=sys.stderr,
        )
    think, learning = workers["think"], workers["learning"]
    sweeper = _Sweeper(sweep_every if exchange else 0)
    failed_cycles, records, conflicts = _run_pipeline(workers, iterator, sweeper)

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
        "decision_quality_seen_by_learning": learning.decision_quality(),
        "reception_overhead": {
            "ratio": round(total_reception / total_cycle, 4) if total_cycle else 0.0,
            "reception_seconds": round(total_reception, 3),
            "cycle_seconds": round(total_cycle, 3),
        },
        "seconds": round(elapsed, 2),
        "ms_per_commit": round(1000 * elapsed / max(len(history), 1), 1),
    }


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
    workers: dict, commits, sweeper: _Sweeper | None = None
) -> tuple[int, list[tuple[float, int, int]], set[int]]:
    """Every worker's cycle at each commit, in pipeline order, and the conflicts sweep when it
    is due. Returns the failed cycles, Think's (predicted, observed, commit index) pairs as
    Learning saw the outcomes, and the conflicts the workers were told about."""
    think, learning = workers["think"], workers["learning"]
    records: list[tuple[float, int, int]] = []
    failed_cycles = 0
    index = -1
    for index, commit in enumerate(commits):
        predictions = dict(think.predictions)  # made at the previous commit
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


def _worker_report(stats) -> dict[str, Any]:
    """One worker's line of the replay report."""
    return {
        "cycles": stats.cycles,
        "errors": stats.errors,
        "last_error": stats.last_error,
        "broadcast": stats.broadcast,
        "broadcast_by_type": dict(sorted(stats.broadcast_by_type.items())),
        "unchanged_skipped": stats.unchanged_skipped,
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
