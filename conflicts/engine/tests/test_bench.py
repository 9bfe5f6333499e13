"""The bench at a small size: the accuracy properties the product relies on.

Correctness properties, not timings. Sizes are small (100 subjects per type, 3 pooled seeds,
a few seconds); across other seed triples the figures move by about +-1 point, so a failure
close to a bound should be checked with the full bench (``python -m conflicts.engine.bench
--seeds 4,5,6,7,8``) before concluding anything.

Of the issue's targets, "hybrid accuracy >= 95 %" and "auto-resolve coverage >= 80 %" are
*not* asserted on the default scenario: no strategy can reach them on its evidence, not even
the oracle that knows every source's true reliability (about 91 % accuracy, 96-97 % correct
on its most confident 80 %). They are asserted, with small-sample slack, on the dense-evidence
variant where they are reachable. See the report in bench.py / the integrator notes.
"""

from dataclasses import replace

import pytest

from conflicts.engine.bench import main, run_bench
from conflicts.engine.scenarios import ScenarioConfig
from conflicts.engine.simulation import SimulationConfig

SEEDS = (1, 2, 3)
SMALL = ScenarioConfig(subjects_per_type=100)


@pytest.fixture(scope="module")
def default_run():
    return run_bench(SMALL, ("majority", "hybrid"), SimulationConfig(), SEEDS)


@pytest.fixture(scope="module")
def dense_run():
    dense = replace(SMALL, report_rate=(0.30, 0.70))
    return run_bench(dense, ("majority", "hybrid"), SimulationConfig(threshold=0.8), SEEDS)


def test_detection_finds_every_contradiction_and_nothing_else(default_run):
    for m in default_run.metrics.values():
        assert m.detection_precision >= 0.99
        assert m.detection_recall >= 0.99
        assert m.expected_contradictions > 1000


def test_what_hybrid_auto_resolves_is_right_and_it_rarely_supersedes_a_true_item(default_run):
    hybrid = default_run.metrics["hybrid"]
    assert hybrid.auto_scorable > 300
    assert hybrid.auto_accuracy >= 0.99
    assert hybrid.wrongful_supersession <= 0.01


def test_majority_baseline_is_fooled_and_hybrid_is_not(default_run):
    majority, hybrid = default_run.metrics["majority"], default_run.metrics["hybrid"]
    assert majority.accuracy <= 0.80
    assert hybrid.accuracy >= majority.accuracy + 0.07


def test_hybrid_is_close_to_what_perfect_knowledge_of_the_sources_allows(default_run):
    assert default_run.ceiling is not None
    assert default_run.metrics["hybrid"].accuracy >= default_run.ceiling.accuracy - 0.04


def test_honest_disagreement_goes_to_review(default_run):
    hybrid = default_run.metrics["hybrid"]
    assert hybrid.ambiguous_conflicts > 20
    assert hybrid.ambiguous_to_review >= 0.90


def test_with_dense_evidence_hybrid_reaches_the_accuracy_and_coverage_targets(dense_run):
    hybrid = dense_run.metrics["hybrid"]
    assert hybrid.accuracy >= 0.94  # full bench, held-out seeds: 95.0 %
    assert hybrid.coverage >= 0.75  # full bench, held-out seeds: 80.5 %
    assert hybrid.auto_accuracy >= 0.99
    assert hybrid.wrongful_supersession <= 0.01
    assert dense_run.ceiling is not None
    assert hybrid.accuracy >= dense_run.ceiling.accuracy - 0.02


def test_cli_prints_the_table_and_the_targets(capsys):
    assert main(["--subjects", "8", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    for name in ("majority", "consensus", "recency", "authority", "hybrid", "(oracle)", "targets:"):
        assert name in out


def test_cli_sensitivity_mode(capsys):
    assert main(["--subjects", "5", "--sensitivity"]) == 0
    out = capsys.readouterr().out
    assert "denser reports" in out and "50% unreliable" in out
