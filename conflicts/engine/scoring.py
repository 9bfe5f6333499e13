"""Scoring of a run against a scenario's ground truth, independent of how the run was made.

A run (the in-memory ``simulation`` or a replay through the real HTTP/ORM path) reports a
``RunOutcome``, referring to items by the scenario's event ``index``:

* ``detections``: every (kind, other item) that detection returned when event i was stored;
* ``supersessions``: every item superseded by a resolution, with ``after_event_index`` = the
  last event stored before it took effect (an item superseded while event i was being
  resolved has ``after_event_index = i``) and ``actor`` 'auto' or 'review' (a refresh by the
  same source is *not* a supersession; the scorer derives refreshes from the events);
* ``conflicts``: one ``ConflictRecord`` per conflict, with the engine's proposal at the time
  it was closed (auto-applied, or computed when the reviewer decided) kept apart from the
  decision actually taken.

``score(scenario, outcome)`` returns ``Metrics``. Definitions (eval = opened at or after the
scenario's warm-up end; truth = the subject's true claim when the conflict closed):

* detection precision/recall on contradictions, over all events: the expected pairs are
  (i, j) with j an item of the same type and subject, another source, still active when i
  arrived (not refreshed by its source, not superseded before i) and a different claim. The
  active set is rebuilt from the events and the reported supersessions, so an item the run
  forgot still counts as a miss.
* accuracy: share of eval conflicts decided (auto or review) whose proposed claim is the
  truth, among those where some candidate held the truth ("scorable");
* coverage: auto-resolved eval conflicts / all eval conflicts (dissolved and still-open
  conflicts count as not auto-resolved);
* auto accuracy: proposal correct among scorable auto-resolved eval conflicts;
* wrongful supersession: auto-superseded items (at or after warm-up end) whose claim was the
  truth at that moment / all auto-superseded items in that period;
* ambiguous to review: eval conflicts on ambiguous subjects not auto-resolved / all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .detection import ConflictKind, normalise
from .scenarios import Scenario

Resolution = Literal["auto", "review", "dissolved", "open"]


@dataclass(frozen=True, slots=True)
class Detection:
    event_index: int
    kind: str
    other_event_index: int


@dataclass(frozen=True, slots=True)
class Supersession:
    event_index: int
    after_event_index: int
    actor: Literal["auto", "review"]
    conflict_id: int
    at: float


@dataclass(frozen=True, slots=True)
class ConflictRecord:
    conflict_id: int
    knowledge_type: str
    subject: str
    opened_event_index: int
    opened_at: float
    closed_at: float
    resolution: Resolution
    proposal_claim: str | None
    proposal_margin: float | None
    decided_claim: str | None
    claims: tuple[str, ...]
    event_indices: tuple[int, ...]


@dataclass
class RunOutcome:
    """What a run reports; see the module docstring."""

    strategy: str
    threshold: float
    detections: list[Detection] = field(default_factory=list)
    supersessions: list[Supersession] = field(default_factory=list)
    conflicts: list[ConflictRecord] = field(default_factory=list)
    #: Active claims per (type, subject) at the end of the run (empty if not reported).
    end_state: dict[tuple[str, str], set[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Metrics:
    strategy: str
    threshold: float
    events: int
    conflicts: int
    decided: int
    scorable: int
    accuracy: float
    auto_resolved: int
    coverage: float
    auto_scorable: int
    auto_accuracy: float
    auto_superseded: int
    wrongful_supersession: float
    detection_precision: float
    detection_recall: float
    expected_contradictions: int
    reported_contradictions: int
    ambiguous_conflicts: int
    ambiguous_to_review: float
    dissolved: int
    still_open: int
    no_true_claim: int


def _ratio(num: int, den: int, empty: float = 1.0) -> float:
    return num / den if den else empty


def expected_contradictions(
    scenario: Scenario, supersessions: Iterable[Supersession]
) -> set[tuple[int, int]]:
    """(new, other) event-index pairs that detection should report as contradictions."""
    pending = sorted(supersessions, key=lambda s: s.after_event_index)
    active: dict[tuple[str, str], dict[str, int]] = {}
    where: dict[int, tuple[tuple[str, str], str]] = {}
    expected: set[tuple[int, int]] = set()
    cursor = 0
    for ev in scenario.events:
        while cursor < len(pending) and pending[cursor].after_event_index < ev.index:
            gone = pending[cursor].event_index
            cursor += 1
            if gone in where:
                key, source = where.pop(gone)
                if active[key].get(source) == gone:
                    del active[key][source]
        key = (ev.knowledge_type, normalise(ev.subject))
        items = active.setdefault(key, {})
        own = items.pop(ev.source, None)
        if own is not None:
            where.pop(own, None)
        claim = normalise(ev.claim)
        for other in items.values():
            if normalise(scenario.events[other].claim) != claim:
                expected.add((ev.index, other))
        items[ev.source] = ev.index
        where[ev.index] = (key, ev.source)
    return expected


def detection_scores(scenario: Scenario, outcome: RunOutcome) -> tuple[float, float, int, int]:
    """(precision, recall, expected pairs, reported pairs) on contradictions."""
    expected = expected_contradictions(scenario, outcome.supersessions)
    reported = {
        (d.event_index, d.other_event_index)
        for d in outcome.detections
        if d.kind == ConflictKind.CONTRADICTION
    }
    hits = len(expected & reported)
    return _ratio(hits, len(reported)), _ratio(hits, len(expected)), len(expected), len(reported)


def score(scenario: Scenario, outcome: RunOutcome) -> Metrics:
    """All metrics of ``outcome`` against ``scenario`` (definitions in the module docstring)."""
    precision, recall, n_expected, n_reported = detection_scores(scenario, outcome)
    evals = [c for c in outcome.conflicts if c.opened_at >= scenario.warmup_end]
    decided = scorable = correct = 0
    auto = auto_scorable = auto_correct = 0
    dissolved = still_open = no_truth = 0
    amb_total = amb_review = 0
    for c in evals:
        if (c.knowledge_type, c.subject) in scenario.ambiguous:
            amb_total += 1
            amb_review += c.resolution != "auto"
        if c.resolution == "dissolved":
            dissolved += 1
            continue
        if c.resolution == "open":
            still_open += 1
            continue
        decided += 1
        truth = scenario.truth_at(c.knowledge_type, c.subject, c.closed_at)
        is_auto = c.resolution == "auto"
        auto += is_auto
        if truth not in c.claims:
            no_truth += 1
            continue
        scorable += 1
        right = c.proposal_claim == truth
        correct += right
        if is_auto:
            auto_scorable += 1
            auto_correct += right
    superseded = [
        s for s in outcome.supersessions if s.actor == "auto" and s.at >= scenario.warmup_end
    ]
    wrongful = 0
    for s in superseded:
        ev = scenario.events[s.event_index]
        wrongful += normalise(ev.claim) == scenario.truth_at(ev.knowledge_type, ev.subject, s.at)
    return Metrics(
        strategy=outcome.strategy,
        threshold=outcome.threshold,
        events=len(scenario.events),
        conflicts=len(evals),
        decided=decided,
        scorable=scorable,
        accuracy=_ratio(correct, scorable, 0.0),
        auto_resolved=auto,
        coverage=_ratio(auto, len(evals), 0.0),
        auto_scorable=auto_scorable,
        auto_accuracy=_ratio(auto_correct, auto_scorable, 0.0),
        auto_superseded=len(superseded),
        wrongful_supersession=_ratio(wrongful, len(superseded), 0.0),
        detection_precision=precision,
        detection_recall=recall,
        expected_contradictions=n_expected,
        reported_contradictions=n_reported,
        ambiguous_conflicts=amb_total,
        ambiguous_to_review=_ratio(amb_review, amb_total, 0.0),
        dissolved=dissolved,
        still_open=still_open,
        no_true_claim=no_truth,
    )


@dataclass(frozen=True, slots=True)
class Target:
    """One product target: ``strategy``'s ``metric`` compared with ``bound``."""

    strategy: str
    metric: str
    op: Literal[">=", "<="]
    bound: float

    def met(self, metrics: Mapping[str, Metrics]) -> bool:
        value = getattr(metrics[self.strategy], self.metric)
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def describe(self) -> str:
        return f"{self.strategy}.{self.metric} {self.op} {self.bound:g}"


#: The issues' targets for the product's strategy (``truth``), with 30 % of sources unreliable.
TARGETS: tuple[Target, ...] = (
    Target("truth", "accuracy", ">=", 0.95),
    Target("majority", "accuracy", "<=", 0.80),
    Target("truth", "wrongful_supersession", "<=", 0.01),
    Target("truth", "auto_accuracy", ">=", 0.99),
    Target("truth", "coverage", ">=", 0.80),
    Target("truth", "detection_precision", ">=", 0.99),
    Target("truth", "detection_recall", ">=", 0.99),
)


def check_targets(
    metrics: Mapping[str, Metrics], targets: Sequence[Target] = TARGETS
) -> list[tuple[Target, bool]]:
    """Each applicable target (its strategy was run) with whether it is met."""
    return [(t, t.met(metrics)) for t in targets if t.strategy in metrics]
