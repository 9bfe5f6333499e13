import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from conflicts.engine.detection import normalise
from conflicts.engine.scenarios import TYPE_SPECS, Scenario, ScenarioConfig, generate

SMALL = ScenarioConfig(seed=7, subjects_per_type=40)
PROJECT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(SMALL)


@pytest.fixture(scope="module")
def large() -> Scenario:
    return generate(ScenarioConfig(seed=3, subjects_per_type=200))


def test_same_seed_same_scenario_other_seed_other_scenario(scenario):
    assert generate(SMALL).digest() == scenario.digest()
    assert generate(ScenarioConfig(seed=8, subjects_per_type=40)).digest() != scenario.digest()


def test_generation_does_not_depend_on_the_hash_seed(scenario):
    code = (
        "from conflicts.engine.scenarios import ScenarioConfig, generate; "
        "print(generate(ScenarioConfig(seed=7, subjects_per_type=40)).digest())"
    )
    digests = set()
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(PROJECT)}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
        )
        digests.add(out.stdout.strip())
    assert digests == {scenario.digest()}


def test_round_trips_through_json(scenario):
    blob = json.dumps(scenario.to_dict())
    again = Scenario.from_dict(json.loads(blob))
    assert again.digest() == scenario.digest()
    assert again.events[5] == scenario.events[5]


def test_events_are_in_arrival_order_with_consistent_truth(scenario):
    offsets = [e.offset for e in scenario.events]
    assert offsets == sorted(offsets)
    assert [e.index for e in scenario.events] == list(range(len(scenario.events)))
    for e in scenario.events:
        assert e.truth_claim == scenario.truth_at(e.knowledge_type, e.subject, e.offset)
        assert e.correct == (e.claim == e.truth_claim)
        assert 0.0 <= e.confidence <= 1.0
        assert 0.0 <= e.offset <= scenario.horizon


def test_payloads_derive_subject_and_claim_like_the_registry(scenario):
    for e in scenario.events:
        spec = TYPE_SPECS[e.knowledge_type]
        subject = " | ".join(normalise(e.payload[f]) for f in spec.subject_fields)
        assert subject == e.subject
        assert e.payload[spec.claim_field] == e.claim
        assert e.claim in spec.claims
    learned = [e.payload for e in scenario.events if e.knowledge_type == "learned_pattern"]
    assert all(0 <= p["success_rate"] <= 1 and p["samples"] >= 0 for p in learned)


def test_copies_repeat_an_earlier_claim_of_their_leader(scenario):
    copies = [e for e in scenario.events if "copied_from" in e.labels]
    assert copies
    for e in copies:
        leader = scenario.events[e.labels["copied_from"]]
        assert leader.index < e.index
        assert (leader.knowledge_type, leader.subject, leader.claim) == (
            e.knowledge_type,
            e.subject,
            e.claim,
        )
        assert leader.source == e.labels["leader"] != e.source


def test_source_mix_per_type_is_as_documented(scenario):
    for ktype in SMALL.types:
        profiles = [p for p in scenario.profiles if p.knowledge_type == ktype]
        assert len(profiles) == SMALL.sources_per_type
        assert sum(not p.reliable for p in profiles) == 3  # 30 % of 10
        assert sum(p.copies is not None for p in profiles) == 2  # 20 % of 10
    # reliability is drawn per type: some worker is reliable for one type, not another
    by_source = defaultdict(set)
    for p in scenario.profiles:
        by_source[p.source].add(p.reliable)
    assert any(len(v) == 2 for v in by_source.values())


def test_the_world_contains_every_documented_difficulty(large):
    changed = [k for k, tl in large.truth.items() if len(tl) > 1]
    assert len(changed) > 0.1 * len(large.truth)
    assert 0.03 < len(large.ambiguous) / len(large.truth) < 0.09
    subjects = defaultdict(set)
    for ktype, subject in large.truth:
        subjects[subject].add(ktype)
    assert any(len(types) > 1 for types in subjects.values())  # same subject, two types
    assert any(e.labels.get("duplicate") for e in large.events)


def test_source_accuracy_and_calibration_match_the_profiles(large):
    profiles = {(p.source, p.knowledge_type): p for p in large.profiles}
    right, total, conf = Counter(), Counter(), defaultdict(float)
    for e in large.events:
        if "copied_from" in e.labels or (e.knowledge_type, e.subject) in large.ambiguous:
            continue
        p = profiles[(e.source, e.knowledge_type)]
        kind = "reliable" if p.reliable else ("over" if p.overconfident else "calibrated-low")
        right[kind] += e.correct
        total[kind] += 1
        conf[kind] += e.confidence
    accuracy = {k: right[k] / total[k] for k in total}
    mean_conf = {k: conf[k] / total[k] for k in total}
    assert 0.88 <= accuracy["reliable"] <= 0.95
    assert abs(mean_conf["reliable"] - accuracy["reliable"]) < 0.03  # calibrated
    assert 0.38 <= accuracy["over"] <= 0.57
    assert mean_conf["over"] - accuracy["over"] > 0.25  # over-confident


@pytest.mark.parametrize(
    "bad", [{"types": ("no_such_type",)}, {"sources_per_type": 20, "fleet_size": 12}]
)
def test_config_rejects_impossible_worlds(bad):
    with pytest.raises(ValueError):
        ScenarioConfig(**bad)
