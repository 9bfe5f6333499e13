from conflicts.engine.scoring import score
from conflicts.engine.simulation import SimulationConfig, simulate

from .factories import event, scenario

HOUR = 3600.0
KEY = ("risk_pattern", "s1")


def _run(events, truth=None, **config):
    world = scenario(events, {KEY: truth or ((0.0, "high"),)})
    return world, simulate(world, SimulationConfig(**config))


def test_a_source_repeating_or_correcting_itself_raises_no_conflict():
    world, out = _run(
        [event(0, "a", "high", 0.0), event(1, "a", "low", HOUR), event(2, "a", "low", 2 * HOUR)]
    )
    assert out.detections == [] and out.conflicts == [] and out.supersessions == []


def test_settle_window_delays_auto_resolution():
    events = [event(i, f"peer-{i}", "high", i * 60.0) for i in range(4)]
    events.append(event(4, "odd", "low", 600.0))
    world, out = _run(events, settle_seconds=2 * HOUR, threshold=0.3)
    (conflict,) = out.conflicts
    assert conflict.resolution == "auto" and conflict.decided_claim == "high"
    assert conflict.closed_at == 600.0 + 2 * HOUR
    (sup,) = out.supersessions
    assert (sup.event_index, sup.actor) == (4, "auto")
    immediate = simulate(world, SimulationConfig(settle_seconds=0, threshold=0.3))
    assert immediate.conflicts[0].closed_at == 600.0


def test_shadow_warm_up_sends_everything_to_review_and_the_reviewer_picks_the_truth():
    events = [event(0, "a", "high", 0.0), event(1, "b", "low", 60.0), event(2, "c", "low", 120.0)]
    world = scenario(events, {KEY: ((0.0, "high"),)}, warmup_end=10 * 24 * HOUR)
    out = simulate(world, SimulationConfig(threshold=0.0, human_error_rate=0.0))
    (conflict,) = out.conflicts
    assert conflict.resolution == "review"
    assert conflict.decided_claim == "high"
    assert conflict.proposal_claim == "low"  # the engine's view is kept apart
    assert sorted(s.event_index for s in out.supersessions) == [1, 2]
    live = simulate(world, SimulationConfig(threshold=0.0, warmup_mode="live", settle_seconds=0))
    assert live.conflicts[0].resolution == "auto"


def test_detection_in_the_simulation_is_complete_and_precise():
    events = [
        event(0, "a", "high", 0.0),
        event(1, "b", "low", 60.0),
        event(2, "c", "high", 120.0, confidence=0.2),
        event(3, "d", "medium", 180.0, subject="s2"),
    ]
    world = scenario(events, {KEY: ((0.0, "high"),), ("risk_pattern", "s2"): ((0.0, "low"),)})
    out = simulate(world, SimulationConfig(threshold=1.0))
    kinds = sorted((d.event_index, d.kind, d.other_event_index) for d in out.detections)
    assert kinds == [
        (1, "contradiction", 0),
        (2, "confidence_mismatch", 0),
        (2, "contradiction", 1),
    ]
    m = score(world, out)
    assert m.detection_precision == m.detection_recall == 1.0
