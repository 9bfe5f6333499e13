"""bench_conflicts' replay harness and the settle sweep command."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from conflicts.engine.scenarios import ScenarioConfig, generate
from conflicts.engine.scoring import score
from conflicts.engine.simulation import SimulationConfig, simulate
from conflicts.models import Conflict
from conflicts.replay import ReplayConfig, replay
from knowledge.models import KnowledgeItem

pytestmark = pytest.mark.django_db


def test_replay_through_the_real_path_matches_the_engine_and_leaves_no_trace():
    scenario = generate(ScenarioConfig(seed=3, subjects_per_type=6))
    before = KnowledgeItem.objects.count()
    for strategy, settle in (("hybrid", 0.0), ("majority", 6 * 3600.0)):
        real = score(
            scenario,
            replay(scenario, ReplayConfig(strategy=strategy, settle_seconds=settle, seed=3)),
        )
        mem = score(
            scenario,
            simulate(scenario, SimulationConfig(strategy=strategy, settle_seconds=settle, seed=3)),
        )
        # detection through transactions is exact, and resolution follows the engine
        assert real.detection_precision == 1.0 and real.detection_recall == 1.0
        assert real.expected_contradictions > 20
        assert (real.conflicts, real.accuracy, real.auto_resolved, real.auto_superseded) == (
            mem.conflicts,
            mem.accuracy,
            mem.auto_resolved,
            mem.auto_superseded,
        )
    assert KnowledgeItem.objects.count() == before and Conflict.objects.count() == 0


def test_bench_command_in_place_prints_the_table():
    out = StringIO()
    call_command(
        "bench_conflicts",
        "--in-place",
        "--subjects",
        "3",
        "--strategies",
        "truth",
        stdout=out,
        stderr=StringIO(),
    )
    text = out.getvalue()
    assert "real broadcast path" in text and "majority" in text and "truth" in text
    assert "truth.detection_recall >= 0.99" in text
    assert "reliability diagram, truth" in text and "expected calibration error" in text


def test_bench_command_truth_family_reports_the_end_state(tmp_path):
    out = StringIO()
    report = tmp_path / "bench.json"
    call_command(
        "bench_conflicts",
        "--in-place",
        "--family",
        "truth",
        "--subjects",
        "30",
        "--strategies",
        "hybrid,truth",
        "--json",
        str(report),
        stdout=out,
        stderr=StringIO(),
    )
    text = out.getvalue()
    assert "end state of the test-phase subjects" in text
    assert "truth.end-state right >= 0.95" in text
    data = json.loads(report.read_text())
    ends = data["end_state"]
    assert set(ends) == {"hybrid", "truth"}
    for e in ends.values():
        assert e["right"] + e["wrong"] + e["undecided"] == e["subjects"] > 0
        assert 0.5 < e["majority"] <= 1.0
    # The calibrated engine settles more of the test phase than the capped hybrid margin.
    assert ends["truth"]["right"] > ends["hybrid"]["right"]
    assert data["reliability"]["truth"]["ece"] >= 0
    assert KnowledgeItem.objects.count() == 0  # rolled back


def test_sweep_command_once(db):
    out = StringIO()
    call_command("sweep_conflicts", "--once", stdout=out)
    assert "re-evaluated 0 conflict(s)" in out.getvalue()
