"""In-memory replay of a scenario through detection, a strategy, trust learning and review.

``simulate(scenario, SimulationConfig(...)) -> scoring.RunOutcome``. It does what the service
does, without Django, in the scenario's arrival order:

1. An arriving item replaces its source's own active item on the same (type, subject)
   (refresh), then ``detection.classify`` runs against the remaining active items.
2. A contradiction opens a conflict on the subject (one open conflict per subject; later
   items on that subject join it). Each time the conflict's item set changes the strategy
   re-proposes on all active items of the subject; a margin >= ``threshold`` applies the
   proposal (losers superseded, trust updated with the automatic weight) -- but not before
   the conflict is ``settle_seconds`` old: reports about one change arrive in bursts, and a
   proposal made on the first contradicting report alone is the most error-prone one. At
   ``opened_at + settle_seconds`` the conflict is evaluated again. If refreshes leave a
   single claim, the conflict is closed as dissolved.
3. A reviewer handles each conflict still open ``review_delay_seconds`` after it was opened:
   the engine's proposal at that moment is recorded, then the reviewer picks the
   claim that is true *now* (this is the only place the simulation reads the truth), except
   with probability ``human_error_rate`` a wrong candidate claim; if no candidate is true the
   reviewer rejects them all. Losers are superseded; trust is updated with the human weight.
4. Warm-up: with ``warmup_mode="shadow"`` nothing is auto-resolved before the scenario's
   ``warmup_end`` (every conflict goes to review, so trust is learned from people, as one
   would roll the feature out); ``"live"`` auto-resolves from the first event with trust at
   its prior.

Freshness is computed at the current simulated time from the type's decay; trust is kept per
(source, type); copy suspicion comes from ``independence.CopyEstimator`` fed with every
arriving item. Strategies see only ``Candidate`` values.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .candidates import Candidate, Proposal, Trust
from .detection import ConflictKind, classify, normalise
from .independence import CopyEstimator
from .scenarios import HOUR, BroadcastEvent, Scenario
from .scoring import ConflictRecord, Detection, RunOutcome, Supersession
from .strategies import get_strategy
from .trust import DEFAULT_PARAMS, TrustParams, apply_updates, prior, resolution_updates

Key = tuple[str, str]


@dataclass(frozen=True)
class SimulationConfig:
    """How the simulated service runs; defaults are the tuned product defaults."""

    strategy: str = "hybrid"
    strategy_options: Mapping[str, Any] = field(default_factory=dict)
    threshold: float = 0.85
    settle_seconds: float = 6 * HOUR
    review_delay_seconds: float = 12 * HOUR
    human_error_rate: float = 0.02
    warmup_mode: Literal["shadow", "live"] = "shadow"
    mismatch_threshold: float = 0.4
    trust: TrustParams = DEFAULT_PARAMS
    copy_detection: bool = True
    seed: int = 0


@dataclass
class _Conflict:
    conflict_id: int
    key: Key
    opened_event_index: int
    opened_at: float
    proposal: Proposal | None = None


class _Simulation:
    def __init__(self, scenario: Scenario, config: SimulationConfig) -> None:
        self.scenario = scenario
        self.config = config
        self.strategy = get_strategy(config.strategy, **dict(config.strategy_options))
        self.rng = random.Random(config.seed)
        self.trust: dict[tuple[str, str], Trust] = {}
        self.active: dict[Key, dict[str, int]] = {}
        self.open: dict[Key, _Conflict] = {}
        # (time, conflict id, kind, key): kind 0 = settle check, 1 = review.
        self.timers: list[tuple[float, int, int, Key]] = []
        self.copies = CopyEstimator()
        self.next_id = 1
        self.outcome = RunOutcome(strategy=config.strategy, threshold=config.threshold)

    # -- candidates -------------------------------------------------------------------------
    def _candidate(self, index: int, now: float) -> Candidate:
        ev: BroadcastEvent = self.scenario.events[index]
        decay = self.scenario.decay_seconds(ev.knowledge_type)
        return Candidate(
            item_id=index,
            source=ev.source,
            claim=normalise(ev.claim),
            confidence=ev.confidence,
            freshness=math.exp(-max(0.0, now - ev.offset) / decay),
            observed_at=ev.offset,
            trust=self.trust.get((ev.source, ev.knowledge_type)) or prior(self.config.trust),
            knowledge_type=ev.knowledge_type,
            subject=normalise(ev.subject),
        )

    def _candidates(self, key: Key, now: float) -> list[Candidate]:
        cands = [self._candidate(i, now) for i in self.active.get(key, {}).values()]
        if self.config.copy_detection:
            cands = self.copies.with_independence(cands)
        return cands

    # -- main loop --------------------------------------------------------------------------
    def run(self) -> RunOutcome:
        events = self.scenario.events
        for ev in events:
            self._timers_until(ev.offset, ev.index - 1)
            self._arrive(ev)
        self._timers_until(math.inf, len(events) - 1)
        end = self.scenario.horizon
        for conflict in list(self.open.values()):
            self._close(conflict, "open", end, None, None)
        return self.outcome

    def _arrive(self, ev: BroadcastEvent) -> None:
        now = ev.offset
        key = (ev.knowledge_type, normalise(ev.subject))
        items = self.active.setdefault(key, {})
        items.pop(ev.source, None)  # refresh: the source's own earlier item is replaced
        new = self._candidate(ev.index, now)
        existing = [self._candidate(i, now) for i in items.values()]
        found = classify(new, existing, self.config.mismatch_threshold)
        for kind, other in found:
            self.outcome.detections.append(Detection(ev.index, str(kind), int(other)))
        items[ev.source] = ev.index
        self.copies.observe(ev.knowledge_type, key[1], ev.source, new.claim, ev.offset)
        conflict = self.open.get(key)
        if conflict is None and any(k == ConflictKind.CONTRADICTION for k, _ in found):
            conflict = _Conflict(self.next_id, key, ev.index, now)
            self.next_id += 1
            self.open[key] = conflict
            cid = conflict.conflict_id
            if self.config.settle_seconds > 0:
                heapq.heappush(self.timers, (now + self.config.settle_seconds, cid, 0, key))
            heapq.heappush(self.timers, (now + self.config.review_delay_seconds, cid, 1, key))
        if conflict is not None:
            self._evaluate(conflict, ev.index, now)

    def _evaluate(self, conflict: _Conflict, index: int, now: float) -> None:
        cands = self._candidates(conflict.key, now)
        if len({c.claim for c in cands}) < 2:
            self._close(conflict, "dissolved", now, None, None)
            return
        proposal = self.strategy.propose(cands)
        conflict.proposal = proposal
        shadow = self.config.warmup_mode == "shadow" and now < self.scenario.warmup_end
        settled = now >= conflict.opened_at + self.config.settle_seconds - 1e-6
        if not shadow and settled and proposal.margin >= self.config.threshold:
            self._apply(conflict, cands, proposal.winner_claim, "auto", index, now)

    def _timers_until(self, until: float, index: int) -> None:
        while self.timers and self.timers[0][0] <= until:
            at, conflict_id, kind, key = heapq.heappop(self.timers)
            conflict = self.open.get(key)
            if conflict is None or conflict.conflict_id != conflict_id:
                continue  # resolved or dissolved meanwhile
            if kind == 0:
                self._evaluate(conflict, index, at)
            else:
                self._review(conflict, index, at)

    def _review(self, conflict: _Conflict, index: int, now: float) -> None:
        cands = self._candidates(conflict.key, now)
        claims = sorted({c.claim for c in cands})
        if len(claims) < 2:
            self._close(conflict, "dissolved", now, None, None)
            return
        conflict.proposal = self.strategy.propose(cands)  # the engine's view, kept apart
        truth = self.scenario.truth_at(conflict.key[0], conflict.key[1], now)
        wrong = [c for c in claims if c != truth]
        decided: str | None
        if self.rng.random() < self.config.human_error_rate:
            decided = self.rng.choice(wrong)
        else:
            decided = truth if truth in claims else None
        self._apply(conflict, cands, decided, "human", index, now)

    def _apply(
        self,
        conflict: _Conflict,
        cands: list[Candidate],
        winner: str | None,
        actor: Literal["auto", "human"],
        index: int,
        now: float,
    ) -> None:
        ktype = conflict.key[0]
        items = self.active[conflict.key]
        record_actor: Literal["auto", "review"] = "auto" if actor == "auto" else "review"
        for c in cands:
            if c.claim != winner:
                items.pop(c.source, None)
                self.outcome.supersessions.append(
                    Supersession(int(c.item_id), index, record_actor, conflict.conflict_id, now)
                )
        updates = resolution_updates(cands, winner, actor, self.config.trust)
        current = {
            u.source: self.trust[(u.source, ktype)]
            for u in updates
            if (u.source, ktype) in self.trust
        }
        for source, value in apply_updates(current, updates, self.config.trust).items():
            self.trust[(source, ktype)] = value
        self._close(conflict, record_actor, now, winner, cands)

    def _close(
        self,
        conflict: _Conflict,
        resolution: Literal["auto", "review", "dissolved", "open"],
        now: float,
        decided: str | None,
        cands: list[Candidate] | None,
    ) -> None:
        del self.open[conflict.key]
        proposal = conflict.proposal
        cands = cands if cands is not None else self._candidates(conflict.key, now)
        self.outcome.conflicts.append(
            ConflictRecord(
                conflict_id=conflict.conflict_id,
                knowledge_type=conflict.key[0],
                subject=conflict.key[1],
                opened_event_index=conflict.opened_event_index,
                opened_at=conflict.opened_at,
                closed_at=now,
                resolution=resolution,
                proposal_claim=proposal.winner_claim if proposal else None,
                proposal_margin=proposal.margin if proposal else None,
                decided_claim=decided,
                claims=tuple(sorted({c.claim for c in cands})),
                event_indices=tuple(sorted(int(c.item_id) for c in cands)),
            )
        )


def simulate(scenario: Scenario, config: SimulationConfig | None = None) -> RunOutcome:
    """Run ``scenario`` through the in-memory service; see the module docstring."""
    return _Simulation(scenario, config or SimulationConfig()).run()
