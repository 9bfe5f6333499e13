"""Learning: outcomes observed across real commits, learned patterns, calibration helpers."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from workers.engine.analysis import Analyzer
from workers.engine.calibration import (
    accuracy,
    brier_improvement,
    brier_score,
    calibration_bins,
    calibration_report,
    expected_calibration_error,
)
from workers.engine.dream import proposal_id
from workers.engine.knowledge import Draft, validate_payload
from workers.engine.learning import (
    FixRates,
    ObservedRisk,
    Outcome,
    learned_patterns,
    observe,
    pair_outcomes,
    pattern_evolutions,
    predictions_from,
    successful_fixes,
)
from workers.engine.rules import Rules, fingerprint

from .sources import function_of_length, function_with_arguments


def many_args_long(name: str, length: int) -> str:
    """A long function that also takes 7 parameters."""
    head = function_with_arguments(name, 7).splitlines()[0]
    return "\n".join([head, *function_of_length(name, length).splitlines()[1:]]) + "\n"


@pytest.fixture
def two_commits(builder):
    """a.py holds five long functions; the second commit treats each one differently."""

    def module(fixed: str, leave: str, regressed: str, with_removed: bool) -> str:
        parts = [fixed, leave, function_of_length("untouched", 60), regressed]
        if with_removed:
            parts.append(function_of_length("removed", 60))
        return "\n\n".join(parts)

    builder.write(
        "pkg/a.py",
        module(
            function_of_length("fixed", 60),
            function_of_length("left", 60),
            function_of_length("regressed", 60),
            with_removed=True,
        ),
    )
    builder.write("pkg/b.py", function_of_length("elsewhere", 70))
    first = builder.commit("long functions")
    builder.write(
        "pkg/a.py",
        module(
            function_of_length("fixed", 30),
            function_of_length("left", 61),
            many_args_long("regressed", 30),
            with_removed=False,
        ),
    )
    second = builder.commit("refactor some")
    repo = builder.repo
    analyzer = Analyzer()
    before = analyzer.analyze_commit(repo, first)
    after = analyzer.analyze_commit(repo, second)
    return before, after, repo.changed_files(first, second), second


def test_observed_outcomes_of_a_real_commit(two_commits):
    before, after, changed, sha = two_commits
    outcomes = {o.qualname: o for o in observe(before, after, changed_files=changed)}
    assert {q: o.status for q, o in outcomes.items()} == {
        "fixed": "fixed",
        "left": "persisted",
        "regressed": "regressed",
        "removed": "removed",
    }
    assert "untouched" not in outcomes  # not changed: nobody tried
    assert "elsewhere" not in outcomes  # other file, not changed
    fixed = outcomes["fixed"]
    assert fixed.success is True and fixed.metric_before == 60 and fixed.metric_after == 30
    assert outcomes["left"].success is False
    assert outcomes["regressed"].success is False
    assert outcomes["removed"].success is None
    assert fixed.commit == sha
    assert fixed.proposal_id == proposal_id(
        "extract_function", fingerprint("long_function", "pkg/a.py", "fixed")
    )
    assert fixed.context == {
        "severity": "low",
        "crowd": "single",
        "margin": "near",
        "slack": "s10",
    }


def test_changed_files_are_only_a_fast_path(two_commits):
    before, after, changed, _ = two_commits
    with_hint = observe(before, after, changed_files=changed)
    without_hint = observe(before, after)
    assert with_hint == without_hint


def test_a_line_shift_alone_yields_no_outcome(builder):
    builder.write("m.py", function_of_length("f", 60))
    first = builder.commit()
    builder.write("m.py", "import os\n\nX = 1\n\n\n" + function_of_length("f", 60))
    second = builder.commit()
    analyzer = Analyzer()
    before = analyzer.analyze_commit(builder.repo, first)
    after = analyzer.analyze_commit(builder.repo, second)
    assert list(before.issues) == list(after.issues)
    assert observe(before, after, changed_files=["m.py"]) == []


def test_a_retune_between_commits_is_not_mistaken_for_a_fix(builder):
    builder.write("m.py", function_of_length("f", 60))
    first = builder.commit()
    builder.write("m.py", function_of_length("f", 59))
    second = builder.commit()
    before = Analyzer().analyze_commit(builder.repo, first)
    after = Analyzer(Rules(thresholds={"long_function": 70})).analyze_commit(builder.repo, second)
    assert after.issues == {}
    assert [o.status for o in observe(before, after)] == ["persisted"]


def test_a_file_that_stops_parsing_yields_no_outcomes(builder):
    builder.write("m.py", function_of_length("f", 60))
    first = builder.commit()
    builder.write("m.py", "def f(:\n")
    second = builder.commit()
    analyzer = Analyzer()
    before = analyzer.analyze_commit(builder.repo, first)
    after = analyzer.analyze_commit(builder.repo, second)
    assert observe(before, after) == []


def test_successful_fix_payloads(two_commits):
    before, after, changed, _ = two_commits
    drafts = successful_fixes(observe(before, after, changed_files=changed))
    assert [d.payload["target"] for d in drafts] == ["pkg/a.py::fixed"]
    payload = drafts[0].payload
    assert payload["fix"] == "extract_function"
    assert payload["improvement"] == 0.5
    assert validate_payload("successful_fix", payload) == []


def outcome(rule: str, status: str, **context: str) -> Outcome:
    return Outcome(
        fingerprint=f"fp-{rule}-{status}",
        rule=rule,
        path="m.py",
        qualname="f",
        status=status,
        severity="low",
        metric_before=60,
        metric_after=40,
        proposal_id=f"p-{rule}-{status}",
        context=context,
    )


def test_learned_patterns_per_rule_and_context():
    outcomes = (
        [outcome("bare_except", "fixed", churn="low")] * 7
        + [outcome("bare_except", "persisted", churn="high")] * 3
        + [outcome("long_function", "persisted", churn="high")] * 8
        + [outcome("long_function", "fixed", churn="low")] * 1
        + [outcome("deep_nesting", "fixed")] * 2
        + [outcome("deep_nesting", "regressed")] * 2
        + [outcome("deep_nesting", "removed")] * 5
    )
    drafts = {d.payload["pattern"]: d for d in learned_patterns(outcomes, min_samples=3)}
    assert drafts["rule:bare_except"].payload["effect"] == "effective"
    assert drafts["rule:bare_except"].payload["success_rate"] == 0.7
    assert drafts["rule:bare_except"].payload["samples"] == 10
    assert drafts["rule:long_function"].payload["effect"] == "ineffective"
    assert drafts["rule:deep_nesting"].payload["effect"] == "mixed"
    assert drafts["rule:deep_nesting"].payload["samples"] == 4  # removed has no verdict
    assert drafts["rule:bare_except|churn:high"].payload["success_rate"] == 0.0
    assert drafts["rule:long_function|churn:high"].payload["samples"] == 8
    assert "rule:long_function|churn:low" not in drafts  # 1 sample < min_samples
    assert drafts["rule:bare_except"].confidence == 0.5
    for item in drafts.values():
        assert validate_payload("learned_pattern", item.payload) == []


def test_fix_rates_accumulate_across_calls():
    rates = FixRates()
    rates.add([outcome("long_function", "fixed")])
    rates.add([outcome("long_function", "persisted"), outcome("long_function", "removed")])
    assert rates.rate("rule:long_function") == (1, 2)
    assert rates.rate("rule:unknown") == (0, 0)


def test_observed_risk_is_the_share_of_changes_that_left_the_function_worse():
    worse = replace(outcome("long_function", "persisted", churn="high"), metric_after=75)
    grown = replace(outcome("high_complexity", "persisted", churn="low"), appeared=True)
    risk = ObservedRisk()
    risk.add([worse] * 6 + [outcome("long_function", "persisted", churn="high")] * 2)
    risk.add([outcome("long_function", "regressed", churn="high"), grown] * 1)
    risk.add([outcome("long_function", "removed", churn="high")] * 5)  # no verdict
    risk.add([outcome("high_complexity", "fixed", churn="low")] * 9)
    drafts = {d.payload["pattern"]: d for d in risk.risk_patterns()}
    long = drafts["rule:long_function|churn:high"]  # Analysis's and Think's subject
    assert long.payload["samples"] == 9 and long.payload["risk_level"] == "critical"
    assert long.payload["risk_score"] == round(7.5 / 10, 4)
    assert long.confidence == round(9 / 19, 4)
    assert drafts["rule:high_complexity|churn:low"].payload["risk_level"] == "low"
    assert risk.counts["rule:high_complexity|churn:low"] == [1, 10]
    assert validate_payload("risk_pattern", long.payload) == []
    risk.add([outcome("too_many_returns", "persisted")] * 4)
    assert "rule:too_many_returns|churn:unknown" not in {  # fewer than 5 changes
        d.payload["pattern"] for d in risk.risk_patterns()
    }


def test_pattern_evolution_trends():
    history = [{"long_function": 10, "bare_except": 5, "deep_nesting": 4}] + [
        {"long_function": 10 + 2 * i, "bare_except": 5, "deep_nesting": 4 - i} for i in (1, 2)
    ]
    drafts = {d.payload["pattern"]: d.payload for d in pattern_evolutions(history)}
    assert drafts["rule:long_function"]["trend"] == "emerging"
    assert drafts["rule:long_function"]["rate"] == pytest.approx(2 / 12, abs=1e-4)
    assert drafts["rule:bare_except"]["trend"] == "stable"
    assert drafts["rule:deep_nesting"]["trend"] == "declining"
    assert drafts["rule:long_function"]["window"] == 3
    for payload in drafts.values():
        assert validate_payload("pattern_evolution", payload) == []
    assert pattern_evolutions(history[:1]) == []
    windowed = pattern_evolutions(history * 5 + [{"long_function": 10}] * 4, window=4)
    assert {
        d.payload["trend"] for d in windowed if d.payload["pattern"] == "rule:long_function"
    } == {"stable"}


def test_predictions_are_paired_with_observed_outcomes():
    items = [
        Draft(
            "decision_outcome",
            {"proposal": "p-long_function-fixed", "decision": "approve", "predicted_success": 0.8},
            0.5,
        ),
        {
            "knowledge_type": "decision_outcome",
            "payload": {
                "proposal": "p-long_function-persisted",
                "decision": "defer",
                "predicted_success": 0.3,
            },
        },
    ]
    predictions = predictions_from(items)
    pairs = pair_outcomes(
        [
            outcome("long_function", "fixed"),
            outcome("long_function", "persisted"),
            outcome("long_function", "removed"),
            outcome("bare_except", "fixed"),
        ],
        predictions,
    )
    assert pairs == [(0.8, 1), (0.3, 0)]


def test_brier_score_values():
    assert brier_score([(1.0, 1), (0.0, 0)]) == 0.0
    assert brier_score([(0.5, 1), (0.5, 0)]) == 0.25
    assert brier_score([(0.8, True), (0.3, False)]) == pytest.approx(0.065)
    assert brier_score([(0.0, 1)]) == 1.0
    with pytest.raises(ValueError):
        brier_score([])
    with pytest.raises(ValueError):
        brier_score([(1.2, 1)])
    with pytest.raises(ValueError):
        brier_score([(0.5, 2)])


def test_accuracy_bins_and_calibration_error():
    pairs = [(0.1, 0), (0.15, 0), (0.9, 1), (0.95, 0), (1.0, 1)]
    assert accuracy(pairs) == 0.8
    bins = calibration_bins(pairs, bins=10)
    assert [(b.lower, b.count) for b in bins] == [(0.1, 2), (0.9, 3)]
    assert bins[0].mean_predicted == pytest.approx(0.125)
    assert bins[0].observed_rate == 0.0
    assert bins[1].observed_rate == pytest.approx(2 / 3)
    expected = (2 * 0.125 + 3 * abs(0.95 - 2 / 3)) / 5
    assert expected_calibration_error(pairs) == pytest.approx(expected)
    report = calibration_report(pairs)
    assert report["pairs"] == 5 and report["base_rate"] == 0.4
    assert math.isclose(report["brier"], brier_score(pairs))


def test_brier_improvement_is_relative():
    constant = [(0.5, 1), (0.5, 0), (0.5, 0), (0.5, 0)]
    informed = [(0.25, 1), (0.25, 0), (0.25, 0), (0.25, 0)]
    # 0.25 vs (0.5625 + 3 * 0.0625) / 4 = 0.1875 -> 25 % better
    assert brier_improvement(informed, constant) == pytest.approx(0.25)
