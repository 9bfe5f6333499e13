"""Cheap online detection of sources that copy each other, as independence weights.

Strategies must not count a copy as a second opinion. This estimator learns, per knowledge
type and ordered pair of sources (leader -> follower), how often the follower repeats the
leader's claim on a subject *shortly after* the leader said it (within ``window_seconds``),
out of all subjects where the follower reported after the leader. Workers that re-broadcast
what they received from the exchange do this almost every time; independent workers
observing the same subject report at unrelated times and often disagree, so their rate is
low. The rate is smoothed with ``prior_pairs`` pseudo-observations of "no copy" and compared
with the type's typical (median) pair rate:

    copy_probability = max(0, (rate - baseline) / (1 - baseline))

``weights(candidates)`` then gives each candidate ``1 - max copy_probability`` over the
earlier candidates asserting the same claim (the first of a group keeps 1.0), which is what
``Candidate.independence`` expects. The estimator sees only what was broadcast (sources,
subjects, claims, times), never ground truth. State is in memory: the integrator can rebuild
it from stored items (one pass in observed order) or persist the pair counters.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .candidates import Candidate, ItemId, Timestamp, to_epoch


@dataclass
class CopyEstimator:
    """Online copy statistics; feed every stored item to ``observe`` in arrival order."""

    window_seconds: float = 3600.0
    prior_pairs: float = 4.0
    min_baseline_pairs: int = 5
    #: The type's baseline is recomputed after this many new observations of the type.
    baseline_refresh: int = 25
    _latest: dict[tuple[str, str], dict[str, tuple[str, float]]] = field(
        default_factory=dict, repr=False
    )
    _pairs: dict[tuple[str, str, str], list[float]] = field(default_factory=dict, repr=False)
    _baseline: dict[str, float] = field(default_factory=dict, repr=False)
    _since_baseline: dict[str, int] = field(default_factory=dict, repr=False)

    def observe(
        self, knowledge_type: str, subject: str, source: str, claim: str, observed_at: Timestamp
    ) -> None:
        """Record that ``source`` said ``claim`` about ``subject`` at ``observed_at``."""
        t = to_epoch(observed_at)
        latest = self._latest.setdefault((knowledge_type, subject), {})
        for other, (other_claim, other_t) in latest.items():
            if other == source or other_t > t:
                continue
            counts = self._pairs.setdefault((knowledge_type, other, source), [0.0, 0.0])
            counts[0] += 1
            if other_claim == claim and t - other_t <= self.window_seconds:
                counts[1] += 1
        latest[source] = (claim, t)
        seen = self._since_baseline.get(knowledge_type, 0) + 1
        self._since_baseline[knowledge_type] = seen
        if seen >= self.baseline_refresh:
            self._baseline.pop(knowledge_type, None)

    def _rate(self, counts: list[float]) -> float:
        return counts[1] / (counts[0] + self.prior_pairs)

    def baseline(self, knowledge_type: str) -> float:
        """Median smoothed quick-repeat rate of the type's pairs (0 with too few pairs);
        refreshed every ``baseline_refresh`` observations of the type (it moves slowly)."""
        if knowledge_type not in self._baseline:
            rates = [
                self._rate(counts)
                for (ktype, _a, _b), counts in self._pairs.items()
                if ktype == knowledge_type and counts[0] >= self.min_baseline_pairs
            ]
            self._baseline[knowledge_type] = statistics.median(rates) if rates else 0.0
            self._since_baseline[knowledge_type] = 0
        return self._baseline[knowledge_type]

    def copy_probability(self, knowledge_type: str, leader: str, follower: str) -> float:
        """Estimated probability that ``follower`` repeats ``leader`` (0..1)."""
        counts = self._pairs.get((knowledge_type, leader, follower))
        if counts is None:
            return 0.0
        base = self.baseline(knowledge_type)
        if base >= 1.0:
            return 0.0
        return max(0.0, (self._rate(counts) - base) / (1.0 - base))

    def weights(self, candidates: Sequence[Candidate]) -> dict[ItemId, float]:
        """Independence weight per candidate item (see the module docstring)."""
        order = sorted(candidates, key=lambda c: (c.observed_ts, str(c.item_id)))
        result: dict[ItemId, float] = {}
        for i, cand in enumerate(order):
            copy = 0.0
            for earlier in order[:i]:
                if earlier.claim == cand.claim and earlier.source != cand.source:
                    copy = max(
                        copy,
                        self.copy_probability(cand.knowledge_type, earlier.source, cand.source),
                    )
            result[cand.item_id] = 1.0 - copy
        return result

    def with_independence(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """``candidates`` with ``independence`` set from ``weights`` (same order)."""
        w = self.weights(candidates)
        return [replace(c, independence=w[c.item_id]) for c in candidates]
