"""Scoring works on any run's report, e.g. one replayed through the real service."""

import pytest

from conflicts.engine.scoring import (
    TARGETS,
    ConflictRecord,
    Detection,
    RunOutcome,
    Supersession,
    check_targets,
    expected_contradictions,
    score,
)

from .factories import event, scenario

KEY = ("risk_pattern", "s1")
HOUR = 3600.0


def _world():
    # alice and bob say high (true), carol says low (wrong); carol then refreshes to high.
    events = [
        event(0, "alice", "high", 0.0),
        event(1, "bob", "high", 1 * HOUR),
        event(2, "carol", "low", 2 * HOUR),
        event(3, "dave", "low", 3 * HOUR),
        event(4, "carol", "high", 4 * HOUR),
    ]
    return scenario(events, {KEY: ((0.0, "high"),)})


def _conflict(
    cid,
    resolution,
    proposal,
    *,
    opened=2 * HOUR,
    closed=3 * HOUR,
    claims=("high", "low"),
    subject="s1",
):
    return ConflictRecord(
        conflict_id=cid,
        knowledge_type="risk_pattern",
        subject=subject,
        opened_event_index=2,
        opened_at=opened,
        closed_at=closed,
        resolution=resolution,
        proposal_claim=proposal,
        proposal_margin=0.9,
        decided_claim=proposal,
        claims=claims,
        event_indices=(0, 1, 2),
    )


def test_expected_contradictions_follow_refreshes_and_supersessions():
    world = _world()
    assert expected_contradictions(world, []) == {(2, 0), (2, 1), (3, 0), (3, 1), (4, 3)}
    # alice's item superseded while event 2 was resolved: dave's item no longer meets it,
    # but carol's item did (detection runs before resolution).
    sup = [Supersession(0, 2, "auto", 1, 2 * HOUR)]
    assert expected_contradictions(world, sup) == {(2, 0), (2, 1), (3, 1), (4, 3)}
    # dave's item superseded before carol's refresh arrives: nothing left to contradict.
    sup = [Supersession(3, 3, "auto", 1, 3 * HOUR)]
    assert (4, 3) not in expected_contradictions(world, sup)


def test_detection_precision_and_recall_count_misses_and_false_alarms():
    world = _world()
    reported = [
        Detection(2, "contradiction", 0),
        Detection(2, "contradiction", 1),
        Detection(3, "contradiction", 0),  # (3, 1) and (4, 3) missed
        Detection(4, "contradiction", 2),  # carol against her own old item: wrong
        Detection(1, "corroboration", 0),
    ]  # other kinds are not scored
    m = score(world, RunOutcome("x", 0.8, detections=reported))
    assert m.detection_precision == pytest.approx(3 / 4)
    assert m.detection_recall == pytest.approx(3 / 5)
    assert (m.expected_contradictions, m.reported_contradictions) == (5, 4)


def test_resolution_metrics():
    world = _world()
    outcome = RunOutcome(
        "x",
        0.8,
        conflicts=[
            _conflict(1, "auto", "high"),
            _conflict(2, "auto", "low"),
            _conflict(3, "review", "low"),
            _conflict(4, "review", "high"),
            _conflict(5, "dissolved", None),
            _conflict(6, "review", "low", claims=("low", "medium")),  # truth not among claims
            _conflict(7, "auto", "low", opened=0.0),  # opened during warm-up: ignored
        ],
        supersessions=[
            Supersession(2, 2, "auto", 1, 2 * HOUR),  # carol's wrong item: rightly
            Supersession(0, 3, "auto", 2, 3 * HOUR),  # alice's true item: wrongly
            Supersession(1, 3, "review", 3, 3 * HOUR),  # reviewer's, not the engine's
            Supersession(3, 0, "auto", 7, 0.5 * HOUR),  # during warm-up: ignored
        ],
    )
    m = score(scenario(list(world.events), dict(world.truth), warmup_end=1 * HOUR), outcome)
    assert m.conflicts == 6
    assert (m.decided, m.scorable, m.no_true_claim, m.dissolved) == (5, 4, 1, 1)
    assert m.accuracy == pytest.approx(2 / 4)
    assert m.auto_resolved == 2
    assert m.coverage == pytest.approx(2 / 6)
    assert m.auto_accuracy == pytest.approx(1 / 2)
    assert m.auto_superseded == 2
    assert m.wrongful_supersession == pytest.approx(1 / 2)


def test_truth_is_taken_when_the_conflict_closed():
    events = [
        event(0, "a", "medium", 0.0, truth="medium"),
        event(1, "b", "critical", 10 * HOUR, truth="critical"),
    ]
    world = scenario(events, {KEY: ((0.0, "medium"), (9 * HOUR, "critical"))})
    record = _conflict(
        1, "auto", "critical", opened=10 * HOUR, closed=10 * HOUR, claims=("critical", "medium")
    )
    m = score(
        world,
        RunOutcome(
            "x", 0.8, conflicts=[record], supersessions=[Supersession(0, 1, "auto", 1, 10 * HOUR)]
        ),
    )
    assert m.accuracy == 1.0 and m.wrongful_supersession == 0.0


def test_check_targets_reports_each_target_of_the_strategies_present():
    world = _world()
    perfect = score(
        world,
        RunOutcome(
            "truth",
            0.8,
            conflicts=[_conflict(1, "auto", "high")],
            detections=[Detection(2, "contradiction", 0)],
        ),
    )
    results = dict((t.describe(), ok) for t, ok in check_targets({"truth": perfect}))
    assert len(results) == len([t for t in TARGETS if t.strategy == "truth"])
    assert results["truth.auto_accuracy >= 0.99"] is True
    assert results["truth.detection_recall >= 0.99"] is False
