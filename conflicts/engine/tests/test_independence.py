from conflicts.engine.independence import CopyEstimator

from .factories import cand

HOUR = 3600.0


def _history(est: CopyEstimator, subjects: int = 30) -> None:
    """'echo' repeats 'leader' within minutes on every subject; 'solo' reports hours later,
    agreeing half of the time; 'other' reports independently too."""
    for i in range(subjects):
        t = i * 24 * HOUR
        leader_claim = "high" if i % 2 else "low"
        est.observe("risk_pattern", f"s{i}", "leader", leader_claim, t)
        est.observe("risk_pattern", f"s{i}", "echo", leader_claim, t + 300)
        est.observe("risk_pattern", f"s{i}", "other", "high", t + 2 * HOUR)
        est.observe("risk_pattern", f"s{i}", "solo", "high" if i % 3 else "low", t + 5 * HOUR)


def test_a_source_that_repeats_another_quickly_is_flagged_as_a_copier():
    est = CopyEstimator()
    _history(est)
    assert est.copy_probability("risk_pattern", "leader", "echo") > 0.8
    assert est.copy_probability("risk_pattern", "leader", "solo") < 0.2
    assert est.copy_probability("risk_pattern", "echo", "leader") == 0.0  # direction matters
    assert est.copy_probability("learned_pattern", "leader", "echo") == 0.0  # per type


def test_weights_discount_the_copy_only_when_its_leader_says_the_same():
    est = CopyEstimator()
    _history(est)
    agreeing = [
        cand(1, "leader", "high", observed_at=0, knowledge_type="risk_pattern"),
        cand(2, "echo", "high", observed_at=60, knowledge_type="risk_pattern"),
        cand(3, "solo", "low", observed_at=90, knowledge_type="risk_pattern"),
    ]
    w = est.weights(agreeing)
    assert w[1] == 1.0 and w[3] == 1.0
    assert w[2] < 0.2
    disagreeing = [agreeing[0], cand(2, "echo", "low", observed_at=60), agreeing[2]]
    assert est.weights(disagreeing)[2] == 1.0
    assert [c.independence for c in est.with_independence(agreeing)] == [w[1], w[2], w[3]]


def test_a_fresh_estimator_assumes_independence():
    est = CopyEstimator()
    cands = [cand(1, "a", "x"), cand(2, "b", "x", observed_at=1.0)]
    assert est.weights(cands) == {1: 1.0, 2: 1.0}
