"""Accuracy benchmark of the resolution strategies on generated scenarios (in memory).

    cd /work/main && python -m conflicts.engine.bench                 # defaults, seed 1
    python -m conflicts.engine.bench --subjects 200 --seeds 1,2,3     # pooled over seeds
    python -m conflicts.engine.bench --sensitivity                    # vary the scenario
    python -m conflicts.engine.bench --check                          # exit 1 on a missed target

For each seed it generates a scenario (``scenarios.generate``), runs every strategy through
the in-memory service (``simulation.simulate``; each strategy its own run with its own trust
learning) and scores the run (``scoring.score``). With several seeds the counts are pooled
before the ratios are taken. It prints one row per strategy, an ``oracle`` reference row
(``ceiling.oracle_ceiling`` on the hybrid run's decisions: perfect knowledge of the sources,
a diagnostic that reads hidden truth) and the product targets.

The same threshold is applied to every strategy; the margins of majority, consensus and
recency are on other scales, so their coverage at that threshold is not a tuned figure.
``accuracy`` (the proposal's correctness over all decided conflicts) is the
threshold-independent comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace

from .ceiling import Ceiling, oracle_ceiling
from .scenarios import ScenarioConfig, generate
from .scoring import Metrics, RunOutcome, check_targets, score
from .simulation import SimulationConfig, simulate

STRATEGY_ORDER: tuple[str, ...] = (
    "majority",
    "consensus",
    "recency",
    "authority",
    "hybrid",
    "truth",
)

#: Tuned auto-resolve threshold of the hybrid strategy's margin (posterior p1 - p2).
DEFAULT_THRESHOLD = 0.85


@dataclass(frozen=True)
class BenchResult:
    metrics: dict[str, Metrics]
    ceiling: Ceiling | None


def run_bench(
    scenario_config: ScenarioConfig,
    strategies: Sequence[str] = STRATEGY_ORDER,
    sim_config: SimulationConfig | None = None,
    seeds: Iterable[int] | None = None,
) -> BenchResult:
    """Metrics per strategy pooled over ``seeds`` (default: the config's own seed), and the
    oracle reference computed on the hybrid runs (None if hybrid is not among them)."""
    base = sim_config or SimulationConfig(threshold=DEFAULT_THRESHOLD)
    per_strategy: dict[str, list[Metrics]] = {name: [] for name in strategies}
    ceilings: list[Ceiling] = []
    for seed in list(seeds) if seeds is not None else [scenario_config.seed]:
        scenario = generate(replace(scenario_config, seed=seed))
        for name in strategies:
            outcome = simulate(scenario, replace(base, strategy=name, seed=seed))
            per_strategy[name].append(score(scenario, outcome))
            if name == "hybrid":
                ceilings.append(oracle_ceiling(scenario, outcome))
    ceiling = None
    if ceilings:
        n = sum(c.conflicts for c in ceilings) or 1
        ceiling = Ceiling(
            conflicts=sum(c.conflicts for c in ceilings),
            accuracy=sum(c.accuracy * c.conflicts for c in ceilings) / n,
            coverage=ceilings[0].coverage,
            accuracy_at_coverage=sum(c.accuracy_at_coverage * c.conflicts for c in ceilings) / n,
        )
    return BenchResult({name: pool(runs) for name, runs in per_strategy.items()}, ceiling)


def pool(runs: Sequence[Metrics]) -> Metrics:
    """Combine runs of one strategy: counts are summed, ratios re-weighted by their base."""
    if len(runs) == 1:
        return runs[0]

    def total(attr: str) -> int:
        return sum(getattr(m, attr) for m in runs)

    def weighted(attr: str, base: str) -> float:
        den = total(base)
        return sum(getattr(m, attr) * getattr(m, base) for m in runs) / den if den else 0.0

    return Metrics(
        strategy=runs[0].strategy,
        threshold=runs[0].threshold,
        events=total("events"),
        conflicts=total("conflicts"),
        decided=total("decided"),
        scorable=total("scorable"),
        accuracy=weighted("accuracy", "scorable"),
        auto_resolved=total("auto_resolved"),
        coverage=weighted("coverage", "conflicts"),
        auto_scorable=total("auto_scorable"),
        auto_accuracy=weighted("auto_accuracy", "auto_scorable"),
        auto_superseded=total("auto_superseded"),
        wrongful_supersession=weighted("wrongful_supersession", "auto_superseded"),
        detection_precision=weighted("detection_precision", "reported_contradictions"),
        detection_recall=weighted("detection_recall", "expected_contradictions"),
        expected_contradictions=total("expected_contradictions"),
        reported_contradictions=total("reported_contradictions"),
        ambiguous_conflicts=total("ambiguous_conflicts"),
        ambiguous_to_review=weighted("ambiguous_to_review", "ambiguous_conflicts"),
        dissolved=total("dissolved"),
        still_open=total("still_open"),
        no_true_claim=total("no_true_claim"),
    )


_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # header, attribute, format
    ("strategy", "strategy", "{}"),
    ("conflicts", "conflicts", "{}"),
    ("accuracy", "accuracy", "{:.1%}"),
    ("auto-cov", "coverage", "{:.1%}"),
    ("auto-acc", "auto_accuracy", "{:.2%}"),
    ("wrongful-sup", "wrongful_supersession", "{:.2%}"),
    ("det-P", "detection_precision", "{:.2%}"),
    ("det-R", "detection_recall", "{:.2%}"),
    ("ambig->review", "ambiguous_to_review", "{:.0%}"),
    ("auto/superseded", "auto_resolved", "{}"),
    ("dissolved", "dissolved", "{}"),
    ("no-true", "no_true_claim", "{}"),
)


def _align(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_table(metrics: dict[str, Metrics], ceiling: Ceiling | None = None) -> str:
    """Plain-text table, one row per strategy (+ the oracle reference row)."""
    rows = [[h for h, _, _ in _COLUMNS]]
    for m in metrics.values():
        row = []
        for _, attr, fmt in _COLUMNS:
            if attr == "auto_resolved":
                row.append(f"{m.auto_resolved}/{m.auto_superseded}")
            else:
                row.append(fmt.format(getattr(m, attr)))
        rows.append(row)
    if ceiling is not None:
        oracle = [
            "(oracle)",
            str(ceiling.conflicts),
            f"{ceiling.accuracy:.1%}",
            f"{ceiling.coverage:.1%}",
            f"{ceiling.accuracy_at_coverage:.2%}",
        ]
        rows.append(oracle + ["-"] * (len(_COLUMNS) - len(oracle)))
    return _align(rows)


def format_end_states(ends: dict) -> str:
    """End state per strategy (``calibration.EndState``), with majority vote on the same claims."""
    rows = [["strategy", "subjects", "right", "wrong", "undecided", "majority vote", "ties"]]
    for name, e in ends.items():
        rows.append(
            [
                name,
                str(e.subjects),
                f"{e.accuracy:.1%}",
                f"{e.wrong / e.subjects:.1%}" if e.subjects else "-",
                f"{e.undecided / e.subjects:.1%}" if e.subjects else "-",
                f"{e.majority_accuracy:.1%}",
                str(e.majority_ties),
            ]
        )
    return _align(rows)


def truth_ceiling_table(seeds: Sequence[int], subjects: int = 200) -> str:
    """The truth family's Bayes-optimal end state per seed (``calibration.truth_family_ceiling``)
    next to majority vote on the same claims."""
    from .calibration import best_right_within, end_state, truth_family_ceiling
    from .scenarios import truth_family

    rows = [
        [
            "seed",
            "subjects",
            "MAP right",
            "majority",
            "@0.85 right/wrong",
            "@0.95 right/wrong",
            "best right, wrong <= 1%",
        ]
    ]
    pooled = None
    for seed in seeds:
        scenario = generate(truth_family(seed, subjects))
        c = truth_family_ceiling(scenario)
        vote = end_state(scenario, RunOutcome(strategy="none", threshold=1.0))
        n = c.subjects
        rows.append(
            [
                str(seed),
                str(n),
                f"{c.map_right / n:.1%}",
                f"{vote.majority_accuracy:.1%}",
                f"{c.at[0.85][0] / n:.1%} / {c.at[0.85][1] / n:.1%}",
                f"{c.at[0.95][0] / n:.1%} / {c.at[0.95][1] / n:.1%}",
                f"{c.best_within_1pct / n:.1%}",
            ]
        )
        pooled = (pooled or []) + [(c, vote)]
    if pooled and len(pooled) > 1:
        n = sum(c.subjects for c, _ in pooled)
        rows.append(
            [
                "all",
                str(n),
                f"{sum(c.map_right for c, _ in pooled) / n:.1%}",
                f"{sum(v.majority_right for _, v in pooled) / n:.1%}",
                *(
                    f"{sum(c.at[t][0] for c, _ in pooled) / n:.1%} / "
                    f"{sum(c.at[t][1] for c, _ in pooled) / n:.1%}"
                    for t in (0.85, 0.95)
                ),
                f"{best_right_within([d for c, _ in pooled for d in c.decisions], n) / n:.1%}",
            ]
        )
    return _align(rows)


#: Scenario variants of ``--sensitivity``: (label, ScenarioConfig overrides).
SENSITIVITY: tuple[tuple[str, dict], ...] = (
    ("default", {}),
    ("denser reports 30-70%", {"report_rate": (0.30, 0.70)}),
    ("sparser reports 10-30%", {"report_rate": (0.10, 0.30)}),
    ("fewer changes 12%", {"change_probability": 0.12}),
    ("no ambiguous subjects", {"ambiguous_fraction": 0.0}),
    ("no copiers", {"copier_fraction": 0.0}),
    ("uncorrelated errors", {"decoy_share": 0.0}),
    ("10% unreliable", {"unreliable_fraction": 0.10}),
    ("50% unreliable", {"unreliable_fraction": 0.50}),
)


def sensitivity(base: ScenarioConfig, sim_config: SimulationConfig, seeds: Sequence[int]) -> str:
    """Majority vs hybrid vs oracle on each variant of ``SENSITIVITY``, as a table."""
    rows = [
        [
            "variant",
            "majority acc",
            "hybrid acc",
            "oracle acc",
            "oracle acc@80%",
            "hybrid cov",
            "hybrid auto-acc",
            "wrongful",
        ]
    ]
    for label, overrides in SENSITIVITY:
        res = run_bench(replace(base, **overrides), ("majority", "hybrid"), sim_config, seeds)
        maj, hyb, orc = res.metrics["majority"], res.metrics["hybrid"], res.ceiling
        assert orc is not None
        rows.append(
            [
                label,
                f"{maj.accuracy:.1%}",
                f"{hyb.accuracy:.1%}",
                f"{orc.accuracy:.1%}",
                f"{orc.accuracy_at_coverage:.1%}",
                f"{hyb.coverage:.1%}",
                f"{hyb.auto_accuracy:.2%}",
                f"{hyb.wrongful_supersession:.2%}",
            ]
        )
    return _align(rows)


def _parser() -> argparse.ArgumentParser:
    defaults = ScenarioConfig()
    p = argparse.ArgumentParser(
        prog="python -m conflicts.engine.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--subjects",
        type=int,
        default=defaults.subjects_per_type,
        help="subjects per knowledge type (default %(default)s)",
    )
    p.add_argument("--seeds", default="1", help="comma-separated seeds, pooled (default 1)")
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="auto-resolve threshold on the margin (default %(default)s)",
    )
    p.add_argument(
        "--settle-hours",
        type=float,
        default=SimulationConfig().settle_seconds / 3600,
        help="minimum conflict age before auto-resolution (default %(default)s)",
    )
    p.add_argument("--strategies", default=",".join(STRATEGY_ORDER))
    p.add_argument("--warmup", choices=("shadow", "live"), default="shadow")
    p.add_argument(
        "--unreliable",
        type=float,
        default=defaults.unreliable_fraction,
        help="fraction of unreliable sources per type (default %(default)s)",
    )
    p.add_argument(
        "--report-rate",
        default=None,
        metavar="LO,HI",
        help="per-source report probability per episode, U(LO, HI) "
        f"(default {defaults.report_rate[0]},{defaults.report_rate[1]})",
    )
    p.add_argument("--no-copy-detection", action="store_true")
    p.add_argument(
        "--sensitivity",
        action="store_true",
        help="print majority/hybrid/oracle on scenario variants instead",
    )
    p.add_argument(
        "--truth-ceiling",
        action="store_true",
        help="print the Bayes-optimal end state of the truth family for --seeds instead",
    )
    p.add_argument("--check", action="store_true", help="exit 1 if a product target is missed")
    p.add_argument("--json", metavar="PATH", help="also write the metrics as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    scenario_config = ScenarioConfig(
        subjects_per_type=args.subjects, unreliable_fraction=args.unreliable
    )
    if args.report_rate:
        lo, hi = (float(x) for x in args.report_rate.split(","))
        scenario_config = replace(scenario_config, report_rate=(lo, hi))
    sim_config = SimulationConfig(
        threshold=args.threshold,
        warmup_mode=args.warmup,
        settle_seconds=args.settle_hours * 3600,
        copy_detection=not args.no_copy_detection,
    )
    head = (
        f"{len(scenario_config.types)} types x {args.subjects} subjects, "
        f"{scenario_config.sources_per_type} sources/type, {args.unreliable:.0%} unreliable, "
        f"report rate {scenario_config.report_rate}, "
        f"seeds {seeds}; threshold {args.threshold}, settle {args.settle_hours:g} h, "
        f"warm-up {args.warmup}"
    )
    if args.truth_ceiling:
        print(truth_ceiling_table(seeds, args.subjects))
        return 0
    if args.sensitivity:
        print(f"sensitivity: {head}")
        print(sensitivity(scenario_config, sim_config, seeds))
        return 0
    result = run_bench(scenario_config, strategies, sim_config, seeds)
    events = next(iter(result.metrics.values())).events if result.metrics else 0
    print(f"scenario: {head}; {events} events")
    print(format_table(result.metrics, result.ceiling))
    checks = check_targets(result.metrics)
    if checks:
        print("\ntargets:")
        for target, ok in checks:
            value = getattr(result.metrics[target.strategy], target.metric)
            print(f"  [{'ok' if ok else 'MISS'}] {target.describe():40s} {value:.2%}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "metrics": {n: asdict(m) for n, m in result.metrics.items()},
                    "oracle": asdict(result.ceiling) if result.ceiling else None,
                },
                fh,
                indent=2,
            )
    return 1 if args.check and not all(ok for _, ok in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
