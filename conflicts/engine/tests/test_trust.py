import pytest

from conflicts.engine.candidates import Trust
from conflicts.engine.trust import (
    TrustParams,
    TrustUpdate,
    apply_updates,
    pin,
    prior,
    resolution_updates,
    unpin,
    update,
)

from .factories import cand


def test_prior_is_a_neutral_beta_2_2():
    t = prior()
    assert (t.alpha, t.beta, t.mean) == (2.0, 2.0, 0.5)


def test_update_adds_the_weight_to_alpha_or_beta_and_returns_a_new_value():
    t = Trust()
    won = update(t, True, 1.0)
    lost = update(t, False, 3.0)
    assert (won.alpha, won.beta) == (3.0, 2.0)
    assert (lost.alpha, lost.beta) == (2.0, 5.0)
    assert (t.alpha, t.beta) == (2.0, 2.0)  # pure: the input is untouched
    assert update(t, True, 0.0) == t
    with pytest.raises(ValueError):
        update(t, True, -1.0)


def test_a_human_decision_moves_trust_more_than_an_automatic_one():
    params = TrustParams()
    assert params.weight_for("human") == 3.0 and params.weight_for("auto") == 1.0
    by_human = update(Trust(), False, params.weight_for("human"))
    by_engine = update(Trust(), False, params.weight_for("auto"))
    assert by_human.mean < by_engine.mean < 0.5
    custom = TrustParams(human_weight=5.0, auto_weight=0.5)
    assert custom.weight_for("human") == 5.0 and custom.weight_for("auto") == 0.5
    with pytest.raises(ValueError):
        params.weight_for("robot")  # type: ignore[arg-type]


def test_max_evidence_forgets_old_outcomes_so_a_degrading_source_is_noticed():
    veteran = Trust(alpha=190.0, beta=10.0)
    capped = veteran
    uncapped = veteran
    # Rescaling to 200 forgets old outcomes with a half-life of about 200 * ln 2 = 139.
    for _ in range(150):
        capped = update(capped, False, 1.0, max_evidence=200.0)
        uncapped = update(uncapped, False, 1.0)
    assert capped.evidence == pytest.approx(200.0)
    assert capped.mean < 0.5 < uncapped.mean


def test_pinned_value_wins_while_learning_continues_underneath():
    learned = Trust(alpha=10.0, beta=2.0)
    pinned = pin(learned, 0.1)
    assert pinned.mean == 0.1
    after = update(pinned, False, 3.0)
    assert after.mean == 0.1 and after.beta == 5.0
    assert unpin(after).mean == pytest.approx(10 / 15)
    with pytest.raises(ValueError):
        pin(learned, 1.5)


def test_resolution_updates_reward_winners_and_penalise_losers_once_per_source():
    cands = [
        cand(1, "a", "high", freshness=1.0),
        cand(2, "b", "high", freshness=0.9),
        cand(3, "c", "low", freshness=1.0),
        cand(4, "c", "medium", freshness=1.0),  # a source with two items counts once
    ]
    ups = resolution_updates(cands, "high", "human", TrustParams(stale_loser_discount=False))
    assert ups == [
        TrustUpdate("a", True, 3.0),
        TrustUpdate("b", True, 3.0),
        TrustUpdate("c", False, 3.0),
    ]


def test_a_stale_loser_is_penalised_less_than_a_fresh_one():
    cands = [
        cand(1, "new", "critical", freshness=1.0),
        cand(2, "outdated", "medium", freshness=0.2),
        cand(3, "wrong", "low", freshness=0.95),
    ]
    ups = {u.source: u for u in resolution_updates(cands, "critical", "auto")}
    assert ups["new"] == TrustUpdate("new", True, 1.0)
    assert ups["outdated"].weight == pytest.approx(0.2)
    assert ups["wrong"].weight == pytest.approx(0.95)


def test_rejecting_every_claim_counts_as_a_loss_for_every_source():
    cands = [cand(1, "a", "x"), cand(2, "b", "y")]
    ups = resolution_updates(cands, None, "human")
    assert [(u.source, u.won) for u in ups] == [("a", False), ("b", False)]


def test_apply_updates_starts_unknown_sources_at_the_prior_and_returns_only_changes():
    known = {"a": Trust(alpha=5.0, beta=1.0), "untouched": Trust(alpha=1.0, beta=9.0)}
    changed = apply_updates(
        known,
        [TrustUpdate("a", False, 1.0), TrustUpdate("new", True, 3.0), TrustUpdate("a", False, 1.0)],
    )
    assert set(changed) == {"a", "new"}
    assert (changed["a"].alpha, changed["a"].beta) == (5.0, 3.0)
    assert (changed["new"].alpha, changed["new"].beta) == (5.0, 2.0)
    assert known["a"] == Trust(alpha=5.0, beta=1.0)
