"""Oracle reference for the bench: what perfect knowledge of the *sources* would achieve.

DIAGNOSTIC ONLY -- this module reads the scenario's hidden source profiles and copy links,
which no strategy may see. It answers "is a miss the engine's fault or the evidence's?": for
every decided eval conflict of a run it re-proposes with the same candidates at the same
moment (``ConflictRecord.event_indices`` at ``closed_at``), but with each vote's reliability
set to the truth about its source (calibrated sources: the item's confidence; over-confident
unreliable sources: their real accuracy) and copies given independence 0. The posterior and
change model are the hybrid's (``strategies.posterior``, forgetting 1.0, 2 effective claims).

It is a reference, not a proof of optimality: a model that also knew *when* the truth
changed, or which wrong claim is the subject's decoy, could do somewhat better. It still
shows how much is left on the table by imperfect trust and copy estimates (the gap to the
engine), and the accuracy no source-trust model can exceed on this evidence (the ceiling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .candidates import Candidate
from .detection import normalise
from .scenarios import Scenario
from .scoring import RunOutcome
from .strategies import posterior


@dataclass(frozen=True, slots=True)
class Ceiling:
    """Oracle accuracy over the run's scorable decided eval conflicts.

    ``accuracy``: all of them. ``accuracy_at_coverage``: the ``coverage`` share on which the
    oracle is most confident (what an ideal auto-resolver could reach at that coverage).
    """

    conflicts: int
    accuracy: float
    coverage: float
    accuracy_at_coverage: float


def oracle_ceiling(scenario: Scenario, outcome: RunOutcome, coverage: float = 0.8) -> Ceiling:
    """See the module docstring. ``coverage`` in (0, 1]."""
    profiles = {(p.source, p.knowledge_type): p for p in scenario.profiles}
    rows: list[tuple[float, bool]] = []
    for c in outcome.conflicts:
        if c.opened_at < scenario.warmup_end or c.resolution not in ("auto", "review"):
            continue
        truth = scenario.truth_at(c.knowledge_type, c.subject, c.closed_at)
        if truth not in c.claims:
            continue
        decay = scenario.decay_seconds(c.knowledge_type)
        present = set(c.event_indices)
        cands: list[Candidate] = []
        for i in c.event_indices:
            ev = scenario.events[i]
            copied = ev.labels.get("copied_from")
            is_copy = copied in present and normalise(scenario.events[copied].claim) == normalise(
                ev.claim
            )
            cands.append(
                Candidate(
                    item_id=i,
                    source=ev.source,
                    claim=normalise(ev.claim),
                    confidence=ev.confidence,
                    freshness=math.exp(-max(0.0, c.closed_at - ev.offset) / decay),
                    observed_at=ev.offset,
                    independence=0.0 if is_copy else 1.0,
                )
            )

        def reliability(cand: Candidate, ktype: str = c.knowledge_type) -> float:
            prof = profiles[(cand.source, ktype)]
            return prof.accuracy if prof.overconfident else cand.confidence

        ordered = sorted(cands, key=lambda x: (x.freshness, x.observed_ts, str(x.item_id)))
        belief, _unseen, _k = posterior(ordered, 2, reliability, 0.99, 1.0)
        ranked = sorted(belief.values(), reverse=True)
        best = max(sorted(belief), key=lambda x: belief[x])
        rows.append((ranked[0] - ranked[1], best == truth))
    if not rows:
        return Ceiling(0, 0.0, coverage, 0.0)
    rows.sort(key=lambda r: -r[0])
    top = rows[: max(1, round(len(rows) * coverage))]
    return Ceiling(
        conflicts=len(rows),
        accuracy=sum(ok for _, ok in rows) / len(rows),
        coverage=coverage,
        accuracy_at_coverage=sum(ok for _, ok in top) / len(top),
    )


__all__ = ["Ceiling", "oracle_ceiling"]
