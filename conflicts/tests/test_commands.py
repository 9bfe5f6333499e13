"""bench_conflicts' replay harness and the settle sweep command."""

from __future__ import annotations

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
        "hybrid",
        stdout=out,
        stderr=StringIO(),
    )
    text = out.getvalue()
    assert "real broadcast path" in text and "majority" in text and "hybrid" in text
    assert "hybrid.detection_recall >= 0.99" in text


def test_sweep_command_once(db):
    out = StringIO()
    call_command("sweep_conflicts", "--once", stdout=out)
    assert "re-evaluated 0 conflict(s)" in out.getvalue()
