"""Replay an engine scenario through the real broadcast path and score it.

``replay(scenario, ReplayConfig(...)) -> RunOutcome`` feeds every event of a
``conflicts.engine.scenarios.Scenario`` to ``knowledge.actions.do_broadcast`` (one real
worker per scenario source, the server clock frozen by ``time_machine`` at the event's time),
runs the settle checks (``actions.do_reevaluate``) and a simulated reviewer
(``actions.do_resolve``: at ``review_delay`` after a conflict opened, it picks an item holding
the true claim, or a wrong one with probability ``human_error_rate``, or rejects every claim if
none is true) at their own times, and reports what the database recorded as a
``scoring.RunOutcome`` keyed by event index. Nothing here decides anything the product does
not: detections come from ``detect_conflicts``, proposals and supersessions from the stored
conflicts and resolution history.

The caller provides a fresh database (the ``bench_conflicts`` command creates one, the tests
use the test database); ``replay`` runs inside one transaction and rolls it back, so several
strategies can be replayed one after the other on the same database.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.test import override_settings

from config.product import product_settings
from conflicts import actions, reliability
from conflicts.choices import Actor, Classification, ConflictStatus, Decision
from conflicts.engine.detection import normalise
from conflicts.engine.scenarios import HOUR, Scenario
from conflicts.engine.scoring import ConflictRecord, Detection, RunOutcome, Supersession
from conflicts.models import Conflict, Resolution
from identity.actions import do_create_worker
from knowledge.actions import BroadcastInput, do_broadcast
from knowledge.choices import ItemStatus
from knowledge.errors import ActionError
from knowledge.models import KnowledgeItem

BASE_TIME = datetime(2026, 1, 5, tzinfo=UTC)
SETTLE, REVIEW, SWEEP = 0, 1, 2


@dataclass(frozen=True)
class ReplayConfig:
    strategy: str = "hybrid"
    threshold: float = 0.85
    settle_seconds: float = 0.0
    review_delay_seconds: float = 12 * HOUR
    human_error_rate: float = 0.02
    warmup_mode: str = "shadow"  # shadow: no auto-resolution before the scenario's warm-up end
    copy_detection: bool = True
    seed: int = 0
    #: The reviewer decides only conflicts due before this offset (None: always); the truth
    #: family sets it to the end of its training phase.
    review_until: float | None = None
    #: Run ``actions.sweep_conflicts`` (trust re-estimate + re-evaluation) every this many
    #: seconds of scenario time, and once after the last event (0: never).
    sweep_seconds: float = 0.0


class _Rollback(Exception):
    pass


def replay(scenario: Scenario, config: ReplayConfig | None = None) -> RunOutcome:
    """Replay ``scenario`` through the real path; the database is left as it was."""
    config = config or ReplayConfig()
    box: dict[str, RunOutcome] = {}
    try:
        with transaction.atomic():
            box["outcome"] = _Replay(scenario, config).run()
            raise _Rollback()
    except _Rollback:
        pass
    return box["outcome"]


class _Replay:
    def __init__(self, scenario: Scenario, config: ReplayConfig):
        import time_machine  # a dev dependency: the bench is a development tool

        self.time_machine = time_machine
        self.scenario = scenario
        self.config = config
        self.rng = random.Random(config.seed)
        self.ke = product_settings().replace(
            conflict_resolution_enabled=True,
            resolution_strategy=config.strategy,
            auto_resolve_threshold=config.threshold,
            conflict_settle_seconds=config.settle_seconds,
            conflict_copy_detection=config.copy_detection,
            conflict_auto_resolve=config.warmup_mode != "shadow",
            cache_enabled=False,
        )
        self.outcome = RunOutcome(strategy=config.strategy, threshold=config.threshold)
        self.index_of: dict[int, int] = {}  # item id -> latest event index
        self.opened: dict[int, tuple[int, float]] = {}  # conflict id -> (event index, offset)
        self.timers: list[tuple[float, int, int]] = []
        self.last_resolution = 0
        self.closed_indices: dict[int, tuple[int, ...]] = {}
        self.reviewer = None

    def _at(self, offset: float):
        return self.time_machine.travel(BASE_TIME + timedelta(seconds=offset), tick=False)

    def run(self) -> RunOutcome:
        from django.contrib.auth import get_user_model

        with override_settings(KNOWLEDGE_EXCHANGE=self.ke):
            actions.reset_copy_estimator(empty=True)
            self.reviewer = get_user_model().objects.create_user(
                f"bench-reviewer-{self.config.seed}", is_staff=True
            )
            sources = sorted({ev.source for ev in self.scenario.events})
            self.workers = {name: do_create_worker(f"bench-{name}")[0] for name in sources}
            last = -1
            if self.config.sweep_seconds > 0:
                heapq.heappush(self.timers, (self.config.sweep_seconds, 0, SWEEP))
            for ev in self.scenario.events:
                self._timers_until(ev.offset, ev.index - 1)
                if not self.ke.conflict_auto_resolve and ev.offset >= self.scenario.warmup_end:
                    # Warm-up over: auto-resolve from here on (reverted with the override).
                    self.ke = self.ke.replace(conflict_auto_resolve=True)
                    settings.KNOWLEDGE_EXCHANGE = self.ke
                self._broadcast(ev)
                last = ev.index
            self._timers_until(self.scenario.horizon, last)
            if self.config.sweep_seconds > 0:
                with self._at(self.scenario.horizon):
                    reliability.sweep()
                self._collect(last)
            self.timers = [t for t in self.timers if t[2] != SWEEP]
            self._timers_until(float("inf"), last)
            self._records()
            self._end_state()
            actions.reset_copy_estimator()
        return self.outcome

    # -- one broadcast ----------------------------------------------------------------------
    def _broadcast(self, ev) -> None:
        observed = BASE_TIME + timedelta(seconds=ev.offset)
        with self._at(ev.offset):
            result = do_broadcast(
                self.workers[ev.source],
                BroadcastInput(
                    knowledge_type=ev.knowledge_type,
                    payload=dict(ev.payload),
                    confidence=ev.confidence,
                    observed_at=observed,
                ),
            )
        for kind, other in getattr(result.item, "conflict_detections", []):
            self.outcome.detections.append(Detection(ev.index, kind, self.index_of[other]))
        self.index_of[result.item.pk] = ev.index
        for cid in result.conflict_ids:
            if cid in self.opened:
                continue
            conflict = Conflict.objects.get(pk=cid)
            if conflict.classification != Classification.CONTRADICTION:
                continue
            self.opened[cid] = (ev.index, ev.offset)
            if self.config.settle_seconds > 0:
                heapq.heappush(self.timers, (ev.offset + self.config.settle_seconds, cid, SETTLE))
            heapq.heappush(self.timers, (ev.offset + self.config.review_delay_seconds, cid, REVIEW))
        self._collect(ev.index)

    # -- timers: settle checks and the reviewer ---------------------------------------------
    def _timers_until(self, until: float, index: int) -> None:
        while self.timers and self.timers[0][0] <= until:
            at, cid, kind = heapq.heappop(self.timers)
            if kind == SWEEP:
                with self._at(at):
                    reliability.sweep()
                self._collect(index)
                if at + self.config.sweep_seconds < self.scenario.horizon:
                    heapq.heappush(self.timers, (at + self.config.sweep_seconds, 0, SWEEP))
                continue
            if kind == REVIEW and self.config.review_until is not None:
                if at > self.config.review_until:
                    continue
            conflict = Conflict.objects.get(pk=cid)
            if not conflict.is_unsettled:
                continue
            with self._at(at):
                if kind == SETTLE:
                    actions.do_reevaluate(cid)
                else:
                    self._review(conflict, at)
            self._collect(index)

    def _review(self, conflict: Conflict, at: float) -> None:
        items = list(
            KnowledgeItem.objects.filter(
                knowledge_type=conflict.knowledge_type,
                subject=conflict.subject,
                status=ItemStatus.ACTIVE,
            ).order_by("pk")
        )
        claims = sorted({i.claim for i in items})
        if len(claims) < 2:
            actions.do_reevaluate(conflict.pk)  # dissolves it
            return
        truth = self.scenario.truth_at(conflict.knowledge_type, conflict.subject, at)
        wrong = [c for c in claims if c != truth]
        if self.rng.random() < self.config.human_error_rate:
            decided: str | None = self.rng.choice(wrong)
        else:
            decided = truth if truth in claims else None
        try:
            if decided is None:
                actions.do_resolve(conflict.pk, Decision.REJECT, user=self.reviewer, note="bench")
            else:
                winner = next(i for i in items if i.claim == decided)
                actions.do_resolve(
                    conflict.pk,
                    Decision.PICK,
                    user=self.reviewer,
                    winner_item_id=winner.pk,
                    note="bench",
                )
        except ActionError:
            pass  # decided meanwhile

    # -- what the database recorded ---------------------------------------------------------
    def _collect(self, index: int) -> None:
        """Supersessions of the resolutions recorded since the last call (after ``index``)."""
        for res in Resolution.objects.filter(pk__gt=self.last_resolution).order_by("pk"):
            self.last_resolution = res.pk
            if res.conflict_id not in self.opened:
                continue
            at = (res.created_at - BASE_TIME).total_seconds()
            # Refreshes keep an item's id: map ids to event indices as they are now.
            self.closed_indices[res.conflict_id] = tuple(
                sorted(self.index_of[c["item_id"]] for c in res.inputs)
            )
            actor = "auto" if res.actor == Actor.AUTO else "review"
            for item_id in res.superseded_item_ids:
                self.outcome.supersessions.append(
                    Supersession(self.index_of[item_id], index, actor, res.conflict_id, at)
                )

    def _end_state(self) -> None:
        """The active claims of every subject at the end (what a reader would be told)."""
        for ktype, subject, claim in KnowledgeItem.objects.filter(
            status=ItemStatus.ACTIVE
        ).values_list("knowledge_type", "subject", "claim"):
            self.outcome.end_state.setdefault((ktype, subject), set()).add(claim)

    def _records(self) -> None:
        last = {}
        for res in Resolution.objects.filter(conflict_id__in=self.opened).order_by("pk"):
            last[res.conflict_id] = res
        for conflict in Conflict.objects.filter(pk__in=self.opened).order_by("pk"):
            index, offset = self.opened[conflict.pk]
            res = last.get(conflict.pk)
            if conflict.is_unsettled:
                resolution, closed = "open", self.scenario.horizon
            elif conflict.decision == Decision.DISSOLVED:
                resolution = "dissolved"
                closed = (conflict.resolved_at - BASE_TIME).total_seconds()
            else:
                resolution = "auto" if conflict.status == ConflictStatus.AUTO_RESOLVED else "review"
                closed = (conflict.resolved_at - BASE_TIME).total_seconds()
            if res is not None and res.inputs:
                claims = tuple(sorted({normalise(c["claim"]) for c in res.inputs}))
                indices = self.closed_indices[conflict.pk]
            else:
                links = list(conflict.links.select_related("item"))
                claims = tuple(sorted({link.item.claim for link in links}))
                indices = tuple(sorted(self.index_of[link.item_id] for link in links))
            decided = None
            if resolution in ("auto", "review"):
                decided = conflict.decided_claim or None
            self.outcome.conflicts.append(
                ConflictRecord(
                    conflict_id=conflict.pk,
                    knowledge_type=conflict.knowledge_type,
                    subject=conflict.subject,
                    opened_event_index=index,
                    opened_at=offset,
                    closed_at=closed,
                    resolution=resolution,
                    proposal_claim=conflict.proposed_claim or None,
                    proposal_margin=conflict.margin,
                    decided_claim=decided,
                    claims=claims,
                    event_indices=indices,
                )
            )
