"""Scoring probabilistic predictions against observed binary outcomes.

A *pair* is ``(predicted probability in 0..1, observed outcome 0/1 or bool)``. The Brier score is
the mean squared difference (0 is perfect; always predicting 0.5 scores 0.25).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

Pair = tuple[float, int | bool]


def _checked(pairs: Iterable[Pair]) -> list[tuple[float, int]]:
    checked = []
    for p, outcome in pairs:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"prediction {p} outside 0..1")
        if outcome not in (0, 1):  # True/False compare equal to 1/0
            raise ValueError(f"outcome {outcome!r} is not 0/1")
        checked.append((float(p), int(outcome)))
    if not checked:
        raise ValueError("no (prediction, outcome) pairs")
    return checked


def brier_score(pairs: Iterable[Pair]) -> float:
    """Mean of ``(p - outcome)^2``; raises ``ValueError`` on no pairs or out-of-range values."""
    checked = _checked(pairs)
    return sum((p - o) ** 2 for p, o in checked) / len(checked)


def accuracy(pairs: Iterable[Pair], threshold: float = 0.5) -> float:
    """Share of pairs where ``p >= threshold`` equals the outcome."""
    checked = _checked(pairs)
    return sum((p >= threshold) == bool(o) for p, o in checked) / len(checked)


@dataclass(frozen=True)
class CalibrationBin:
    lower: float
    upper: float
    count: int
    mean_predicted: float
    observed_rate: float


def calibration_bins(pairs: Iterable[Pair], bins: int = 10) -> list[CalibrationBin]:
    """Equal-width bins over [0, 1] (p = 1 falls in the last bin); empty bins are omitted."""
    if bins < 1:
        raise ValueError("bins must be >= 1")
    checked = _checked(pairs)
    grouped: list[list[tuple[float, int]]] = [[] for _ in range(bins)]
    for p, o in checked:
        grouped[min(int(p * bins), bins - 1)].append((p, o))
    result = []
    for index, group in enumerate(grouped):
        if group:
            result.append(
                CalibrationBin(
                    lower=index / bins,
                    upper=(index + 1) / bins,
                    count=len(group),
                    mean_predicted=sum(p for p, _ in group) / len(group),
                    observed_rate=sum(o for _, o in group) / len(group),
                )
            )
    return result


def expected_calibration_error(pairs: Iterable[Pair], bins: int = 10) -> float:
    """Count-weighted mean of ``|mean predicted - observed rate|`` over the bins."""
    checked = _checked(pairs)
    table = calibration_bins(checked, bins)
    return sum(b.count * abs(b.mean_predicted - b.observed_rate) for b in table) / len(checked)


def brier_improvement(with_knowledge: Sequence[Pair], without: Sequence[Pair]) -> float:
    """Relative Brier improvement ``1 - B(with) / B(without)`` (0.1 = 10 % better)."""
    base = brier_score(without)
    if base == 0:
        return 0.0
    return 1.0 - brier_score(with_knowledge) / base


def calibration_report(pairs: Iterable[Pair], bins: int = 10) -> dict[str, Any]:
    """Brier, accuracy, ECE, base rate and bins as plain data (for logs and dashboards)."""
    checked = _checked(pairs)
    return {
        "pairs": len(checked),
        "base_rate": sum(o for _, o in checked) / len(checked),
        "brier": brier_score(checked),
        "accuracy": accuracy(checked),
        "ece": expected_calibration_error(checked, bins),
        "bins": [asdict(b) for b in calibration_bins(checked, bins)],
    }


# --- Skill against the base rate --------------------------------------------------------------
#
# A *record* is ``(predicted, observed, step)``: ``step`` orders the decisions in time (the
# replay's commit index at which the outcome was observed). The reference forecast of a
# decision is the prequential base rate: the outcome rate of every record of an earlier step,
# with a Jeffreys prior, ``(successes + 0.5) / (n + 1)`` (0.5 when nothing is known yet). It
# never peeks at the decision's own step or later ones.

Record = tuple[float, int | bool, int]


def prequential_base_rates(records: Sequence[Record]) -> list[float]:
    """The reference forecast of each record (same order as ``records``)."""
    steps = sorted({step for _, _, step in records})
    totals: dict[int, list[int]] = {step: [0, 0] for step in steps}
    for _, outcome, step in records:
        totals[step][0] += int(outcome)
        totals[step][1] += 1
    before: dict[int, float] = {}
    successes = samples = 0
    for step in steps:
        before[step] = (successes + 0.5) / (samples + 1)
        successes += totals[step][0]
        samples += totals[step][1]
    return [before[step] for _, _, step in records]


def brier_skill(brier: float, reference: float) -> float:
    """``1 - brier / reference`` (0: as good as the reference; > 0 better; < 0 worse)."""
    return 1.0 - brier / reference if reference > 0 else 0.0


def auc(pairs: Iterable[Pair]) -> float | None:
    """Area under the ROC curve (ties count half); ``None`` without both outcomes."""
    checked = sorted(_checked(pairs))
    positives = sum(o for _, o in checked)
    negatives = len(checked) - positives
    if positives == 0 or negatives == 0:
        return None
    rank_sum = 0.0  # sum of the (average) ranks of the positives, 1-based
    index = 0
    while index < len(checked):
        end = index
        while end + 1 < len(checked) and checked[end + 1][0] == checked[index][0]:
            end += 1
        average_rank = (index + end) / 2 + 1
        rank_sum += average_rank * sum(o for _, o in checked[index : end + 1])
        index = end + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _scores(records: Sequence[Record], reference: Sequence[float]) -> dict[str, float | None]:
    pairs = [(p, o) for p, o, _ in records]
    brier = brier_score(pairs)
    ref = sum((b - int(o)) ** 2 for b, (_, o, _) in zip(reference, records, strict=True))
    ref /= len(records)
    return {
        "brier": brier,
        "reference_brier": ref,
        "brier_skill": brier_skill(brier, ref),
        "auc": auc(pairs),
    }


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def forecast_report(
    records: Iterable[Record],
    *,
    bins: int = 10,
    resamples: int = 1000,
    seed: int = 12,
    level: float = 0.95,
    burn_in: int = 0,
) -> dict[str, Any]:
    """Brier, Brier skill against the prequential base rate, AUC, calibration bins, and
    percentile bootstrap intervals (``resamples`` resamplings of the decisions with a seeded
    generator; each keeps its own reference forecast, so the skill's interval reflects which
    decisions were drawn, not a re-run of time).

    ``burn_in``: the records of the first ``burn_in`` steps are left out of the scores (their
    outcomes still make the reference of the later steps). At the first step the reference
    knows no outcome and says 0.5; a forecaster that knows the outcome rate from elsewhere
    (other projects' knowledge) wins most of its skill there, which ``burn_in=1`` removes."""
    import random

    records = [(float(p), int(o), int(step)) for p, o, step in records]
    reference = prequential_base_rates(records)
    if burn_in > 0:
        kept = set(sorted({step for _, _, step in records})[burn_in:])
        chosen = [i for i, (_, _, step) in enumerate(records) if step in kept]
        records = [records[i] for i in chosen]
        reference = [reference[i] for i in chosen]
        if not records:
            raise ValueError("no records after the burn-in")
    pairs = [(p, o) for p, o, _ in records]
    report = calibration_report(pairs, bins)
    report.update(_scores(records, reference))
    report["reference_mean"] = sum(reference) / len(reference)
    intervals: dict[str, list[float]] = {"brier": [], "brier_skill": [], "auc": []}
    rng = random.Random(seed)
    n = len(records)
    for _ in range(resamples if n > 1 else 0):
        drawn = [rng.randrange(n) for _ in range(n)]
        scores = _scores([records[i] for i in drawn], [reference[i] for i in drawn])
        for key, values in intervals.items():
            if scores[key] is not None:
                values.append(scores[key])
    tail = (1 - level) / 2
    report["ci"] = {
        key: [_percentile(values, tail), _percentile(values, 1 - tail)] if values else None
        for key, values in intervals.items()
    }
    report["ci_level"] = level
    report["resamples"] = resamples
    return report
