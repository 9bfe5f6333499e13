"""End-state accuracy per subject and the reliability diagram of a run (pure Python).

``end_state(scenario, outcome)``: for every subject first reported at or after the scenario's
warm-up (training) end, what a reader is told at the end of the run: *right* when its only
active claim is the true one, *wrong* when the true claim is not active, *undecided* when
several claims are still active (pending review). Majority vote on the same claims (each
source's latest claim, plurality; a tie broken at random, counted as its expected value) is
computed on the same subjects.

``calibration(scenario, outcome)``: one (predicted probability, was it right) pair per scored
conflict (the engine's last proposal: the winner's probability and whether the winner was
the truth when the conflict closed), binned into a reliability diagram with the expected
calibration error ECE = sum_b n_b / n * |mean predicted_b - observed accuracy_b|.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .detection import normalise
from .scenarios import Scenario
from .scoring import RunOutcome


@dataclass(frozen=True, slots=True)
class EndState:
    subjects: int
    right: int
    wrong: int
    undecided: int
    majority_right: float  # expected number right (ties broken at random)
    majority_ties: int

    @property
    def accuracy(self) -> float:
        return self.right / self.subjects if self.subjects else 0.0

    @property
    def majority_accuracy(self) -> float:
        return self.majority_right / self.subjects if self.subjects else 0.0

    def __add__(self, other: EndState) -> EndState:
        return EndState(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))


def end_state(scenario: Scenario, outcome: RunOutcome) -> EndState:
    """Right / wrong / undecided subjects of the test phase, and majority vote on them."""
    first: dict[tuple[str, str], float] = {}
    latest: dict[tuple[str, str], dict[str, str]] = {}
    for ev in scenario.events:
        key = (ev.knowledge_type, normalise(ev.subject))
        first.setdefault(key, ev.offset)
        latest.setdefault(key, {})[ev.source] = normalise(ev.claim)
    right = wrong = undecided = ties = 0
    majority = 0.0
    subjects = [k for k, t in first.items() if t >= scenario.warmup_end]
    for key in subjects:
        truth = scenario.truth_at(key[0], key[1], scenario.horizon)
        active = outcome.end_state.get(key, set())
        if active == {truth}:
            right += 1
        elif truth not in active:
            wrong += 1
        else:
            undecided += 1
        votes = Counter(latest[key].values()).most_common()
        best = [c for c, n in votes if n == votes[0][1]]
        ties += len(best) > 1
        majority += (truth in best) / len(best)
    return EndState(len(subjects), right, wrong, undecided, majority, ties)


@dataclass(frozen=True, slots=True)
class Bin:
    low: float
    high: float
    count: int
    predicted: float  # mean predicted probability in the bin
    observed: float  # share right in the bin


def calibration_pairs(scenario: Scenario, outcome: RunOutcome) -> list[tuple[float, bool]]:
    """(winner probability, winner was true) for every scored conflict opened after warm-up
    whose proposal is known and where some candidate held the truth."""
    pairs = []
    for c in outcome.conflicts:
        if c.opened_at < scenario.warmup_end or c.resolution == "dissolved":
            continue
        if c.proposal_claim is None or c.proposal_margin is None:
            continue
        truth = scenario.truth_at(c.knowledge_type, c.subject, c.closed_at)
        if truth not in c.claims:
            continue
        pairs.append((float(c.proposal_margin), c.proposal_claim == truth))
    return pairs


def reliability_diagram(
    pairs: Iterable[tuple[float, bool]],
    edges: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0),
) -> tuple[list[Bin], float]:
    """Bins (by predicted probability; the first bin also holds anything below its low edge)
    and the expected calibration error."""
    pairs = list(pairs)
    bounds = [0.0, *edges[1:]]
    bins = []
    ece = 0.0
    for i in range(len(bounds) - 1):
        low, high = bounds[i], bounds[i + 1]
        last = i == len(bounds) - 2
        inside = [(p, ok) for p, ok in pairs if low <= p < high or (last and p == high)]
        if not inside:
            bins.append(Bin(low, high, 0, 0.0, 0.0))
            continue
        predicted = sum(p for p, _ in inside) / len(inside)
        observed = sum(ok for _, ok in inside) / len(inside)
        bins.append(Bin(low, high, len(inside), predicted, observed))
        ece += len(inside) / len(pairs) * abs(predicted - observed)
    return bins, ece


def format_diagram(bins: Sequence[Bin], ece: float) -> str:
    """The reliability diagram as a text table with a bar per bin."""
    lines = ["predicted     n   mean-pred  observed  |observed accuracy", "-" * 64]
    for b in bins:
        bar = "#" * round(b.observed * 30) if b.count else ""
        lines.append(
            f"[{b.low:.2f},{b.high:.2f}) {b.count:5d}   {b.predicted:8.3f}  {b.observed:8.3f}  |{bar}"
            if b.count
            else f"[{b.low:.2f},{b.high:.2f}) {b.count:5d}          -         -  |"
        )
    lines.append(f"expected calibration error (ECE): {ece:.3f}")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Ceiling:
    """What a decider knowing every source's true accuracy (and the generator's error model)
    could reach on the test subjects with all their claims: MAP accuracy, and the share right /
    wrong when applying only posteriors at or above each threshold (the rest undecided)."""

    subjects: int
    map_right: int
    at: dict[float, tuple[int, int]]  # threshold -> (right, wrong)
    #: (MAP posterior, MAP is the truth) per test subject.
    decisions: tuple[tuple[float, bool], ...] = ()

    @property
    def best_within_1pct(self) -> int:
        return best_right_within(self.decisions, self.subjects)


def best_right_within(decisions, subjects: int, wrong_share: float = 0.01) -> int:
    """The most subjects right with at most ``wrong_share`` of ``subjects`` wrong, deciding
    them in order of the posterior (the threshold chosen after the fact: none does better)."""
    best = right = wrong = 0
    for _p, ok in sorted(decisions, key=lambda r: -r[0]):
        right += ok
        wrong += not ok
        if wrong <= wrong_share * subjects:
            best = max(best, right)
    return best


def truth_family_ceiling(
    scenario: Scenario, thresholds: Sequence[float] = (0.5, 0.85, 0.95)
) -> Ceiling:
    """Bayes-optimal end state of the truth family (reads hidden truth: a diagnostic)."""
    profiles = {p.source: p for p in scenario.profiles}
    claims = sorted({normalise(e.claim) for e in scenario.events})
    decoy_share = scenario.config.decoy_share
    by_subject: dict[tuple[str, str], list] = {}
    first: dict[tuple[str, str], float] = {}
    for ev in scenario.events:
        key = (ev.knowledge_type, normalise(ev.subject))
        first.setdefault(key, ev.offset)
        by_subject.setdefault(key, []).append(ev)
    right = 0
    at = {t: [0, 0] for t in thresholds}
    ranked: list[tuple[float, bool]] = []
    tests = [k for k, t in first.items() if t >= scenario.warmup_end]
    for key in tests:
        scores = {}
        for x in claims:
            total = 0.0
            for decoy in (c for c in claims if c != x):  # the decoy is unknown: marginalise
                like = 1.0
                for ev in by_subject[key]:
                    prof, said = profiles[ev.source], normalise(ev.claim)
                    if said == x:
                        like *= prof.accuracy
                    elif prof.reliable:
                        like *= (1 - prof.accuracy) / (len(claims) - 1)
                    else:
                        spread = (1 - decoy_share) / (len(claims) - 1)
                        like *= (1 - prof.accuracy) * (decoy_share * (said == decoy) + spread)
                total += like
            scores[x] = total
        best = max(claims, key=lambda c: scores[c])
        p = scores[best] / sum(scores.values())
        ok = best == scenario.truth_at(key[0], key[1], scenario.horizon)
        right += ok
        ranked.append((p, ok))
        for t in thresholds:
            if p >= t:
                at[t][0 if ok else 1] += 1
    return Ceiling(len(tests), right, {t: (r, w) for t, (r, w) in at.items()}, tuple(ranked))
