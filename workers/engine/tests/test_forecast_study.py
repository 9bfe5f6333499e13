"""The forecast study: its records are Think's scored forecasts, its Think-like candidate is
Think, and its ceilings bound what a recalibration of Think could reach."""

from __future__ import annotations

from workers.engine.forecast_study import THINK, decision_records, prequential, study
from workers.engine.replay import replay

from .test_replay import build_history


def test_records_are_thinks_scored_forecasts_and_the_candidate_reproduces_think(builder):
    build_history(builder, commits=25)
    records, calibration = decision_records(builder.repo)
    reference = replay(builder.repo)
    assert [(r["p"], r["y"], r["step"]) for r in records] == reference.pairs
    assert calibration["pairs"] == len(records) > 100
    assert {r["features"]["rule"] for r in records} >= {"long_function", "bare_except"}
    # Think's combination rule over Learning's patterns, recomputed from earlier outcomes only
    recomputed = prequential(records, THINK)
    assert max(abs(a - r["p"]) for a, r in zip(recomputed, records, strict=True)) < 1e-3


def test_study_reports_rates_candidates_and_ceilings(builder):
    build_history(builder, commits=25)
    records, _ = decision_records(builder.repo)
    result = study(records)
    assert result["decisions"] == len(records)
    assert result["fixed"] == sum(r["y"] for r in records) > 10
    rates = result["fix_rate_by_feature"]["rule"]
    assert set(rates) >= {"long_function", "bare_except"}
    think = result["prequential"]["think"]
    assert abs(think["brier_skill"] - result["think_as_replayed"]["brier_skill"]) < 0.01
    assert think["skill_ci"][0] <= think["brier_skill"] <= think["skill_ci"][1]
    # the best monotone recalibration in hindsight is at least as good as Think itself
    ceiling = result["in_sample_ceilings"]["isotonic(think)"]["brier_skill"]
    assert ceiling >= result["think_as_replayed"]["brier_skill"]
