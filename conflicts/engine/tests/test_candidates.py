import json
from datetime import UTC, datetime, timedelta

import pytest

from conflicts.engine.candidates import Candidate, Trust, rank_claims, to_epoch

from .factories import cand


def test_trust_mean_is_the_beta_posterior_mean_unless_pinned():
    assert Trust().mean == pytest.approx(0.5)
    assert Trust(alpha=9, beta=1).mean == pytest.approx(0.9)
    pinned = Trust(alpha=9, beta=1, pinned=0.2)
    assert pinned.mean == 0.2
    assert pinned.learned_mean == pytest.approx(0.9)


@pytest.mark.parametrize("kwargs", [{"alpha": 0}, {"beta": -1}, {"pinned": 1.5}])
def test_trust_rejects_impossible_values(kwargs):
    with pytest.raises(ValueError):
        Trust(**kwargs)


@pytest.mark.parametrize("field", ["confidence", "freshness", "independence"])
def test_candidate_rejects_values_outside_unit_interval(field):
    kwargs = {"confidence": 0.5, "freshness": 0.5, "independence": 1.0, field: 1.2}
    with pytest.raises(ValueError, match=field):
        Candidate(item_id=1, source="a", claim="x", **kwargs)


def test_observed_at_accepts_epoch_and_datetimes_naive_as_utc():
    aware = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    naive = aware.replace(tzinfo=None)
    assert to_epoch(aware) == to_epoch(naive) == aware.timestamp()
    assert to_epoch(12.5) == 12.5
    later = cand(1, "a", "x", observed_at=aware + timedelta(seconds=1))
    assert later.observed_ts == aware.timestamp() + 1


def test_snapshot_is_json_serialisable_and_complete():
    snap = cand(7, "think-1", "high", trust=Trust(3, 1, pinned=0.9)).snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert set(snap) >= {
        "item_id",
        "source",
        "claim",
        "confidence",
        "freshness",
        "trust",
        "independence",
        "observed_at",
    }
    assert snap["trust"]["pinned"] == 0.9


def test_rank_claims_breaks_exact_ties_by_latest_observation_then_confidence_then_name():
    cands = [
        cand(1, "a", "low", observed_at=10, confidence=0.9),
        cand(2, "b", "high", observed_at=20, confidence=0.5),
        cand(3, "c", "medium", observed_at=20, confidence=0.7),
    ]
    scores = {"low": 1.0, "high": 1.0, "medium": 1.0}
    # high and medium share the latest observation; medium has the higher confidence.
    assert rank_claims(scores, cands) == ["medium", "high", "low"]
    same = [cand(1, "a", "b-claim", observed_at=5), cand(2, "b", "a-claim", observed_at=5)]
    assert rank_claims({"b-claim": 2.0, "a-claim": 2.0}, same) == ["a-claim", "b-claim"]


def test_rank_claims_orders_by_score_first():
    cands = [cand(1, "a", "x", observed_at=99), cand(2, "b", "y", observed_at=0)]
    assert rank_claims({"x": 1.0, "y": 2.0}, cands) == ["y", "x"]
