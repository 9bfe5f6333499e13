"""Skill against the base rate: prequential reference, AUC, bootstrap intervals."""

from __future__ import annotations

import pytest

from workers.engine.calibration import auc, forecast_report, prequential_base_rates


def test_the_reference_only_knows_earlier_steps():
    records = [(0.1, 1, 0), (0.1, 0, 0), (0.1, 0, 1), (0.1, 1, 2), (0.1, 0, 2)]
    # step 0: nothing known; step 1: 1 of 2; step 2: 1 of 3 (its own outcomes never count)
    assert prequential_base_rates(records) == [0.5, 0.5, 0.5, 1.5 / 4, 1.5 / 4]


def test_auc_counts_ties_half_and_needs_both_outcomes():
    assert auc([(0.9, 1), (0.1, 0)]) == 1.0
    assert auc([(0.1, 1), (0.9, 0)]) == 0.0
    assert auc([(0.5, 1), (0.5, 0), (0.2, 0)]) == 0.75
    assert auc([(0.5, 0), (0.4, 0)]) is None


def test_the_base_rate_forecast_has_no_skill_and_a_better_one_has_some():
    outcomes = [int(i % 10 == 0) for i in range(400)]
    base = prequential_base_rates([(0.0, o, i) for i, o in enumerate(outcomes)])
    plain = forecast_report(
        [(b, o, i) for i, (b, o) in enumerate(zip(base, outcomes, strict=True))]
    )
    assert plain["brier_skill"] == pytest.approx(0.0)
    informed = forecast_report([(0.6 if o else 0.05, o, i) for i, o in enumerate(outcomes)])
    assert informed["brier_skill"] > 0.5 and informed["auc"] == 1.0
    low, high = informed["ci"]["brier_skill"]
    assert low <= informed["brier_skill"] <= high
    # a confident, wrong forecaster is worse than the base rate
    wrong = forecast_report([(0.05 if o else 0.6, o, i) for i, o in enumerate(outcomes)])
    assert wrong["brier_skill"] < 0 and wrong["auc"] == 0.0


def test_bootstrap_is_seeded():
    records = [(0.2 + 0.001 * i, int(i % 7 == 0), i // 10) for i in range(200)]
    assert (
        forecast_report(records, resamples=200)["ci"]
        == forecast_report(records, resamples=200)["ci"]
    )
    assert (
        forecast_report(records, resamples=200, seed=1)["ci"]
        != forecast_report(records, resamples=200, seed=2)["ci"]
    )


def test_burn_in_scores_later_decisions_against_a_reference_that_knew_the_first():
    """At the first step the base-rate forecast knows no outcome (0.5): a forecaster told the
    rate by other projects wins most of its skill there. ``burn_in=1`` leaves those decisions
    out of the scores while their outcomes still make the later steps' reference."""
    records = [(0.1, 0, 0)] * 9 + [(0.1, 1, 0)] + [(0.1, 0, 1)] * 10
    full = forecast_report(records, resamples=0)
    later = forecast_report(records, resamples=0, burn_in=1)
    assert full["pairs"] == 20 and later["pairs"] == 10
    assert later["reference_brier"] == pytest.approx((1.5 / 11) ** 2)  # not 0.5 ** 2
    assert later["brier"] == pytest.approx(0.01)
    assert later["brier_skill"] < full["brier_skill"]
