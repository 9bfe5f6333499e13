"""Rule thresholds, severities, fingerprints and retuning."""

from __future__ import annotations

import pytest

from workers.engine.analysis import Analyzer
from workers.engine.knowledge import Draft, validate_payload
from workers.engine.rules import Issue, Rules, fingerprint

from .sources import (
    class_with_methods,
    function_of_complexity,
    function_of_length,
    function_of_nesting,
    function_with_arguments,
    function_with_returns,
)


def issues_for(source: str, rules: Rules | None = None, path: str = "pkg/mod.py") -> list[Issue]:
    snapshot = Analyzer(rules).analyze_files({path: source})
    return list(snapshot.issues.values())


def only(rule: str, source: str, rules: Rules | None = None) -> list[Issue]:
    return [i for i in issues_for(source, rules) if i.rule == rule]


@pytest.mark.parametrize(
    ("length", "severity"),
    [(50, None), (51, "low"), (75, "low"), (76, "medium"), (100, "medium"), (101, "high")],
)
def test_long_function_threshold_and_severity_bands(length, severity):
    found = only("long_function", function_of_length("f", length))
    if severity is None:
        assert found == []
    else:
        assert [(i.severity, i.metric, i.threshold) for i in found] == [(severity, length, 50)]


@pytest.mark.parametrize(
    ("rule", "make", "limit"),
    [
        ("high_complexity", function_of_complexity, 10),
        ("deep_nesting", function_of_nesting, 4),
        ("too_many_arguments", function_with_arguments, 5),
        ("too_many_returns", function_with_returns, 6),
        ("large_class", class_with_methods, 20),
    ],
)
def test_threshold_rules_fire_only_strictly_above_the_threshold(rule, make, limit):
    assert only(rule, make("F", limit)) == []
    above = only(rule, make("F", limit + 1))
    assert len(above) == 1
    assert above[0].metric == limit + 1
    assert above[0].location == "pkg/mod.py::F"


def test_count_rules_have_fixed_severities():
    source = (
        "def f(a=[]):\n"
        "    try:\n        pass\n    except:\n        pass\n"
        "    try:\n        pass\n    except Exception:\n        pass\n"
    )
    found = {i.rule: i.severity for i in issues_for(source)}
    assert found == {
        "mutable_default_argument": "medium",
        "bare_except": "medium",
        "broad_except": "low",
    }


def test_thresholds_are_configurable():
    rules = Rules(thresholds={"long_function": 20})
    found = only("long_function", function_of_length("f", 45), rules)
    assert [(i.threshold, i.severity) for i in found] == [(20, "high")]
    assert only("long_function", function_of_length("f", 45), Rules()) == []


def test_disabled_rules_produce_nothing_and_unknown_rules_are_refused():
    assert (
        only(
            "long_function",
            function_of_length("f", 80),
            Rules(disabled=frozenset({"long_function"})),
        )
        == []
    )
    with pytest.raises(ValueError, match="unknown rule"):
        Rules(thresholds={"no_such_rule": 1})


def test_fingerprint_survives_a_line_shift_and_depends_on_rule_path_and_qualname():
    code = function_of_length("f", 60)
    before = only("long_function", code)[0]
    after = only("long_function", "import os\n\n\nCONSTANT = 1\n\n" + code)[0]
    assert after.line != before.line
    assert after.fingerprint == before.fingerprint
    assert before.fingerprint == fingerprint("long_function", "pkg/mod.py", "f")
    others = {
        fingerprint("high_complexity", "pkg/mod.py", "f"),
        fingerprint("long_function", "pkg/other.py", "f"),
        fingerprint("long_function", "pkg/mod.py", "g"),
    }
    assert before.fingerprint not in others and len(others) == 3


def test_issue_payload_meets_the_contract_and_round_trips():
    issue = only("long_function", function_of_length("f", 60))[0]
    payload = issue.to_payload()
    assert validate_payload("issue_pattern", payload) == []
    assert payload["location"] == "pkg/mod.py::f"
    assert Issue.from_payload(payload) == issue
    del payload["fingerprint"]
    assert Issue.from_payload(payload).fingerprint == issue.fingerprint


def learned(pattern: str, effect: str, rate: float, samples: int, **extra) -> Draft:
    payload = {"pattern": pattern, "effect": effect, "success_rate": rate, "samples": samples}
    return Draft("learned_pattern", {**payload, **extra}, 0.8)


def test_retune_demotes_an_ineffective_rule_and_restores_an_effective_one():
    rules = Rules().retune([learned("rule:long_function", "ineffective", 0.1, 40)])
    assert rules.severity_offsets == {"long_function": -1}
    assert [i.severity for i in only("long_function", function_of_length("f", 101), rules)] == [
        "medium"
    ]
    assert [i.severity for i in only("long_function", function_of_length("f", 60), rules)] == [
        "low"
    ]
    assert rules.notes and "long_function" in rules.notes[0]
    restored = rules.retune([learned("rule:long_function", "effective", 0.7, 40)])
    assert restored.severity_offsets == {"long_function": 0}
    assert restored.digest() == Rules().digest()


def test_retune_is_idempotent_and_ignores_weak_context_or_foreign_patterns():
    once = Rules().retune([learned("rule:bare_except", "ineffective", 0.1, 12)])
    twice = once.retune([learned("rule:bare_except", "ineffective", 0.1, 12)])
    assert twice.severity_offsets == once.severity_offsets == {"bare_except": -1}
    ignored = Rules().retune(
        [
            learned("rule:long_function", "ineffective", 0.0, 9),  # too few samples
            learned("rule:long_function|churn:high", "ineffective", 0.0, 500),  # context
            learned("rule:not_a_rule", "ineffective", 0.0, 500),
            {"knowledge_type": "issue_pattern", "payload": {"pattern": "rule:long_function"}},
        ]
    )
    assert ignored.digest() == Rules().digest()


def test_retune_uses_the_pattern_with_most_samples():
    rules = Rules().retune(
        [
            learned("rule:deep_nesting", "ineffective", 0.1, 15),
            learned("rule:deep_nesting", "effective", 0.8, 30),
        ]
    )
    assert rules.severity_offsets.get("deep_nesting", 0) == 0


def test_retune_adopts_an_explicit_threshold_within_bounds():
    rules = Rules().retune([learned("rule:long_function", "ineffective", 0.1, 20, threshold=70)])
    assert rules.threshold("long_function") == 70
    clamped = Rules().retune([learned("rule:long_function", "mixed", 0.4, 20, threshold=1000)])
    assert clamped.threshold("long_function") == 100
    assert only("long_function", function_of_length("f", 90), clamped) == []
