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
