"""Recall: context from git history and past knowledge."""

from __future__ import annotations

import itertools

from workers.engine.analysis import Analyzer
from workers.engine.dream import propose
from workers.engine.knowledge import Draft, validate_payload
from workers.engine.recall import (
    age_bucket,
    churn_bucket,
    context_enrichments,
    context_index,
    knowledge_retrievals,
    recall,
)

from .conftest import DAY
from .sources import function_of_length


def fake_clock(step: float = 0.001):
    ticks = itertools.count()
    return lambda: next(ticks) * step


def test_buckets():
    assert [churn_bucket(n) for n in (0, 2, 3, 10, 11)] == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
    ]
    assert [age_bucket(d) for d in (None, 0, 29.9, 30, 364, 365)] == [
        "unknown",
        "new",
        "new",
        "recent",
        "recent",
        "old",
    ]


def test_recall_reads_churn_and_age_from_history_and_fixes_from_knowledge(builder):
    builder.write("hot.py", function_of_length("busy", 60))
    builder.write("cold.py", function_of_length("quiet", 60))
    builder.commit()
    for i in range(11):
        builder.write("hot.py", function_of_length("busy", 60) + f"X = {i}\n")
        last = builder.commit()
    repo = builder.repo
    snap = Analyzer().analyze_commit(repo, last)
    proposals = propose(snap.issues.values())
    knowledge = [
        Draft(
            "successful_fix",
            {"rule": "long_function", "target": "hot.py::busy", "fix": "extract_function"},
            0.8,
        ),
        Draft(
            "successful_fix",
            {"rule": "long_function", "target": "other.py::g", "fix": "extract_function"},
            0.8,
        ),
        {
            "knowledge_type": "learned_pattern",
            "payload": {
                "pattern": "rule:long_function",
                "effect": "ineffective",
                "success_rate": 0.1,
                "samples": 30,
            },
        },
    ]
    result = recall(proposals, repo.file_stats(last), knowledge, clock=fake_clock())
    by_target = {c.target: c for c in result.contexts.values()}
    busy, quiet = by_target["hot.py::busy"], by_target["cold.py::quiet"]
    assert (busy.churn, quiet.churn) == (12, 1)
    assert busy.buckets == {"churn": "high", "age": "new"}
    assert quiet.age_days == 11.0  # first commit 11 days before the newest one
    assert (busy.past_fixes, busy.target_fixes) == (2, 1)
    assert (quiet.past_fixes, quiet.target_fixes) == (2, 0)
    assert (busy.fix_rate, busy.fix_samples, busy.track_record) == (0.1, 30, "ineffective")
    retrievals = {r.query: r for r in result.retrievals}
    assert retrievals["successful_fix by rule"].hit_rate == 1.0
    assert retrievals["successful_fix by target"].hit_rate == 0.5
    assert retrievals["learned_pattern by rule"].results == 2
    assert all(r.latency_ms > 0 for r in result.retrievals)


def test_without_knowledge_nothing_is_found():
    snap = Analyzer().analyze_files({"m.py": function_of_length("f", 60)})
    result = recall(propose(snap.issues.values()), {}, [], clock=fake_clock())
    context = next(iter(result.contexts.values()))
    assert (context.churn, context.age_days, context.past_fixes) == (0, None, 0)
    assert context.track_record == "unknown"
    assert {r.hit_rate for r in result.retrievals} == {0.0}


def test_enrichment_and_retrieval_payloads_meet_the_contract_and_skip_known_values():
    snap = Analyzer().analyze_files({"m.py": function_of_length("f", 60)})
    result = recall(propose(snap.issues.values()), {}, [], clock=fake_clock())
    drafts = context_enrichments(result)
    assert [d.payload["aspect"] for d in drafts] == ["churn", "age", "past_fixes", "track_record"]
    for item in drafts:
        assert validate_payload("context_enrichment", item.payload) == []
        assert item.payload["target"] == "m.py::f"
    index = context_index(drafts)
    assert index == {
        "m.py::f": {
            "churn": "low",
            "age": "unknown",
            "past_fixes": "none",
            "track_record": "unknown",
        }
    }
    assert context_enrichments(result, known=drafts) == []
    retrievals = knowledge_retrievals(result)
    assert len(retrievals) == 3
    for item in retrievals:
        assert validate_payload("knowledge_retrieval", item.payload) == []


def test_age_is_relative_to_the_given_time(builder):
    builder.write("m.py", function_of_length("f", 60))
    sha = builder.commit()
    snap = Analyzer().analyze_commit(builder.repo, sha)
    stats = builder.repo.file_stats(sha)
    now = stats["m.py"].first_time + 400 * DAY
    result = recall(propose(snap.issues.values()), stats, now=now, clock=fake_clock())
    assert next(iter(result.contexts.values())).buckets["age"] == "old"
