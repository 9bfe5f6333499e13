"""Commit analysis, the blob cache and the Analysis knowledge payloads."""

from __future__ import annotations

from workers.engine.analysis import (
    ROOT_SCOPE,
    Analyzer,
    complexity_trends,
    issue_patterns,
    reevaluate,
    rule_counts,
    scope_of,
)
from workers.engine.knowledge import validate_payload
from workers.engine.rules import Rules

from .sources import function_of_complexity, function_of_length


def test_unchanged_files_are_not_parsed_again(builder):
    for name in ("a", "b", "c"):
        builder.write(f"pkg/{name}.py", function_of_length(name, 60))
    first = builder.commit()
    builder.write("pkg/b.py", function_of_length("b", 30))
    second = builder.commit()
    analyzer = Analyzer()
    snap1 = analyzer.analyze_commit(builder.repo, first)
    assert analyzer.stats["parsed"] == 3
    snap2 = analyzer.analyze_commit(builder.repo, second)
    assert analyzer.stats["parsed"] == 4
    assert {i.qualname for i in snap1.issues.values()} == {"a", "b", "c"}
    assert {i.qualname for i in snap2.issues.values()} == {"a", "c"}
    analyzer.analyze_commit(builder.repo, first)
    assert analyzer.stats["parsed"] == 4


def test_files_with_syntax_errors_are_skipped_and_counted():
    snapshot = Analyzer().analyze_files(
        {
            "ok.py": function_of_length("f", 60),
            "py2.py": 'print "hello"\n',
            "broken.py": "def f(:\n",
        }
    )
    assert snapshot.skipped == ("broken.py", "py2.py")
    assert snapshot.skipped_count == 2
    assert snapshot.files == 3
    assert [i.location for i in snapshot.issues.values()] == ["ok.py::f"]


def test_issue_patterns_are_valid_and_most_severe_first():
    snapshot = Analyzer().analyze_files(
        {"b.py": function_of_length("mild", 55), "a.py": function_of_length("bad", 140)},
        commit="abc123",
    )
    drafts = issue_patterns(snapshot)
    assert [(d.payload["location"], d.payload["severity"], d.urgency) for d in drafts] == [
        ("a.py::bad", "high", "high"),
        ("b.py::mild", "low", "low"),
    ]
    for item in drafts:
        assert item.knowledge_type == "issue_pattern"
        assert validate_payload("issue_pattern", item.payload) == []
        assert item.payload["commit"] == "abc123"
    assert len(issue_patterns(snapshot, limit=1)) == 1
    assert len(issue_patterns(snapshot, min_severity="medium")) == 1


def test_complexity_trend_per_top_level_scope():
    analyzer = Analyzer()
    before = analyzer.analyze_files(
        {
            "core/a.py": function_of_complexity("f", 4),
            "api/b.py": function_of_complexity("g", 6),
            "setup.py": function_of_complexity("h", 2),
        }
    )
    after = analyzer.analyze_files(
        {
            "core/a.py": function_of_complexity("f", 8),
            "api/b.py": function_of_complexity("g", 3),
            "setup.py": function_of_complexity("h", 2),
        }
    )
    trends = {d.payload["scope"]: d.payload for d in complexity_trends(after, before)}
    assert trends["core"]["direction"] == "increasing" and trends["core"]["delta"] == 4
    assert trends["api"]["direction"] == "decreasing" and trends["api"]["delta"] == -3
    assert trends[ROOT_SCOPE]["direction"] == "stable" and trends[ROOT_SCOPE]["avg_complexity"] == 2
    for payload in trends.values():
        assert validate_payload("complexity_trend", payload) == []
    first = {d.payload["scope"]: d for d in complexity_trends(before)}
    assert {d.payload["direction"] for d in first.values()} == {"stable"}
    assert {d.confidence for d in first.values()} == {0.5}


def test_scope_of():
    assert scope_of("pkg/sub/mod.py") == "pkg"
    assert scope_of("setup.py") == ROOT_SCOPE


def test_reevaluate_applies_other_rules_without_parsing():
    analyzer = Analyzer()
    snapshot = analyzer.analyze_files({"m.py": function_of_length("f", 40)})
    assert rule_counts(snapshot) == {}
    stricter = reevaluate(snapshot, Rules(thresholds={"long_function": 30}))
    assert rule_counts(stricter) == {"long_function": 1}
    assert analyzer.stats["parsed"] == 1
    assert reevaluate(snapshot, Rules()) is snapshot


def test_issue_patterns_already_known_are_not_repeated():
    analyzer = Analyzer()
    first = analyzer.analyze_files({"a.py": function_of_length("f", 60)})
    sent = issue_patterns(first)
    assert len(sent) == 1
    assert issue_patterns(first, known=sent) == []
    worse = analyzer.analyze_files({"a.py": function_of_length("f", 120)})
    assert [d.payload["severity"] for d in issue_patterns(worse, known=sent)] == ["high"]
