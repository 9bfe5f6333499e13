"""Accuracy benchmark of conflict resolution through the real broadcast path.

    python manage.py bench_conflicts                       # 40 subjects/type, seed 1, ~3 min
    python manage.py bench_conflicts --seeds 4,5 --subjects 80 --settle-hours 6 --memory
    python manage.py bench_conflicts --family truth --seeds 1,2,3 --strategies hybrid,truth

Generates the engine's seeded scenarios (known truth, 30 % unreliable sources by default),
creates a dedicated database (a temporary SQLite file, or ``bench_ke_<instance>`` on
PostgreSQL; dropped afterwards), and for each strategy replays every event through
``knowledge.actions.do_broadcast`` with the clock frozen at the event's time
(``conflicts.replay``), then scores what the database recorded. Majority vote runs in the
same invocation as the baseline. ``--family truth`` runs the truth-discovery family instead
(``scenarios.truth_family``: a reviewer during the training phase only, then none) and adds
the end state per subject (right / wrong / undecided) next to majority vote on the same
claims. Every run prints the reliability diagram of the strategies' proposals (winner
probability vs how often it was right) and the expected calibration error. ``--memory`` also prints the engine's in-memory simulation
of the same scenario, to show where the real path differs.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, replace

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from config.product import product_settings
from conflicts.engine.bench import STRATEGY_ORDER, format_end_states, format_table, pool
from conflicts.engine.calibration import (
    calibration_pairs,
    end_state,
    format_diagram,
    reliability_diagram,
)
from conflicts.engine.ceiling import Ceiling, oracle_ceiling
from conflicts.engine.scenarios import HOUR, ScenarioConfig, generate, truth_family
from conflicts.engine.scoring import check_targets, score
from conflicts.engine.simulation import SimulationConfig, simulate


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument(
            "--seeds", default="1", help="comma-separated scenario seeds, pooled (default 1)"
        )
        parser.add_argument(
            "--subjects", type=int, default=40, help="subjects per knowledge type (default 40)"
        )
        parser.add_argument("--strategies", default=",".join(STRATEGY_ORDER))
        parser.add_argument(
            "--threshold",
            type=float,
            default=None,
            help="auto-resolve threshold (default: the auto_resolve_threshold setting)",
        )
        parser.add_argument(
            "--settle-hours",
            type=float,
            default=None,
            help="settle window (default: the conflict_settle_seconds setting)",
        )
        parser.add_argument(
            "--review-delay-hours",
            type=float,
            default=12.0,
            help="when the simulated reviewer decides what is still unsettled (default 12)",
        )
        parser.add_argument(
            "--human-error", type=float, default=0.02, help="reviewer error rate (default 0.02)"
        )
        parser.add_argument(
            "--warmup",
            choices=("shadow", "live"),
            default="shadow",
            help="shadow: no auto-resolution during the scenario's warm-up (default)",
        )
        parser.add_argument(
            "--unreliable",
            type=float,
            default=0.30,
            help="unreliable source fraction (default 0.30)",
        )
        parser.add_argument(
            "--family",
            choices=("episodes", "truth"),
            default="episodes",
            help="episodes: the five-type scenarios (default); truth: the truth-discovery family",
        )
        parser.add_argument(
            "--sweep-hours",
            type=float,
            default=6.0,
            help="run sweep_conflicts (trust re-estimate + re-evaluation) every N scenario hours "
            "and after the last event (default 6; 0 = never)",
        )
        parser.add_argument("--png", metavar="PATH", help="reliability diagram as PNG (matplotlib)")
        parser.add_argument("--no-copy-detection", action="store_true")
        parser.add_argument(
            "--memory", action="store_true", help="also run the in-memory simulation"
        )
        parser.add_argument(
            "--in-place",
            action="store_true",
            help="use the configured database (in a rolled-back transaction) instead of a new one",
        )
        parser.add_argument("--json", metavar="PATH", help="write the metrics as JSON")
        parser.add_argument(
            "--check", action="store_true", help="exit 1 if a product target is missed"
        )

    def handle(self, *args, **opts):
        try:
            import time_machine  # noqa: F401
        except ImportError:
            raise CommandError(
                "bench_conflicts needs the dev requirements (time-machine)"
            ) from None
        ke = product_settings()
        threshold = (
            opts["threshold"] if opts["threshold"] is not None else ke.auto_resolve_threshold
        )
        settle = (
            opts["settle_hours"] * HOUR
            if opts["settle_hours"] is not None
            else ke.conflict_settle_seconds
        )
        seeds = [int(s) for s in opts["seeds"].split(",") if s.strip()]
        strategies = [s.strip() for s in opts["strategies"].split(",") if s.strip()]
        if "majority" not in strategies and opts["family"] == "episodes":
            strategies.insert(0, "majority")  # the baseline always runs (truth: end-state vote)
        if opts["family"] == "truth":
            scen_cfg = truth_family(subjects=opts["subjects"] if opts["subjects"] != 40 else 200)
            if opts["unreliable"] != 0.30:
                scen_cfg = replace(scen_cfg, unreliable_fraction=opts["unreliable"])
        else:
            scen_cfg = ScenarioConfig(
                subjects_per_type=opts["subjects"], unreliable_fraction=opts["unreliable"]
            )
        head = (
            f"family {opts['family']}, {len(scen_cfg.types)} types x {scen_cfg.subjects_per_type} subjects, {scen_cfg.sources_per_type} sources/type, "
            f"{opts['unreliable']:.0%} unreliable; seeds {seeds}; threshold {threshold}, "
            f"settle {settle / HOUR:g} h, review after {opts['review_delay_hours']:g} h, "
            f"warm-up {opts['warmup'] if opts['family'] == 'episodes' else 'live, reviewer in training only'}, "
            f"sweep every {opts['sweep_hours']:g} h"
        )
        self.stdout.write(f"scenario: {head}")
        if opts["in_place"]:
            return self._run(seeds, strategies, scen_cfg, threshold, settle, opts)
        conn = connections["default"]
        old_name = conn.settings_dict["NAME"]
        test = conn.settings_dict.setdefault("TEST", {})
        saved_test_name = test.get("NAME")
        if conn.vendor == "sqlite":
            test["NAME"] = f"{tempfile.gettempdir()}/ke-bench-{settings.INSTANCE}.sqlite3"
        else:
            test["NAME"] = f"bench_ke_{settings.INSTANCE}"
        conn.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        try:
            return self._run(seeds, strategies, scen_cfg, threshold, settle, opts)
        finally:
            conn.creation.destroy_test_db(old_name, verbosity=0)
            test["NAME"] = saved_test_name

    def _run(self, seeds, strategies, scen_cfg, threshold, settle, opts):
        runs = self._replay_seeds(seeds, strategies, scen_cfg, threshold, settle, opts)
        truth_family_run = opts["family"] == "truth"
        metrics = {name: pool(r) for name, r in runs["real"].items()}
        ceiling = _pooled_ceiling(runs["ceilings"])
        self.stdout.write(f"\nreal broadcast path ({runs['events']} events):")
        self.stdout.write(format_table(metrics, ceiling))
        mem_metrics = None
        if opts["memory"]:
            mem_metrics = {name: pool(r) for name, r in runs["memory"].items()}
            self.stdout.write("\nin-memory simulation of the same scenarios (conflicts.engine):")
            self.stdout.write(format_table(mem_metrics))
        ends = runs["ends"]
        if truth_family_run:
            self.stdout.write("\nend state of the test-phase subjects (no reviewer):")
            self.stdout.write(format_end_states(ends))
        diagrams = {}
        for name in strategies:
            if name == "majority" or not runs["pairs"][name]:
                continue
            bins, ece = reliability_diagram(runs["pairs"][name])
            diagrams[name] = {"bins": [asdict(b) for b in bins], "ece": ece}
            self.stdout.write(f"\nreliability diagram, {name} (winner probability at close):")
            self.stdout.write(format_diagram(bins, ece))
        if opts["png"] and diagrams:
            self._png(opts["png"], diagrams)
        checks = self._check(metrics, ends if truth_family_run else {})
        if opts["json"]:
            report = {
                "scenario": {
                    "seeds": seeds,
                    "subjects": opts["subjects"],
                    "unreliable": opts["unreliable"],
                },
                "threshold": threshold,
                "settle_seconds": settle,
                "real": {n: asdict(m) for n, m in metrics.items()},
                "memory": {n: asdict(m) for n, m in mem_metrics.items()} if mem_metrics else None,
                "oracle": asdict(ceiling) if ceiling else None,
                "family": opts["family"],
                "end_state": {
                    n: asdict(e) | {"accuracy": e.accuracy, "majority": e.majority_accuracy}
                    for n, e in ends.items()
                },
                "reliability": diagrams,
            }
            with open(opts["json"], "w", encoding="utf-8") as fh:
                json.dump(report, fh, indent=2)
        if opts["check"] and not all(ok for _, ok in checks):
            raise CommandError("a product target is missed")

    def _replay_seeds(self, seeds, strategies, scen_cfg, threshold, settle, opts) -> dict:
        """Every strategy replayed over every seed's scenario through the real broadcast path
        (and, with ``--memory``, the in-memory simulation): the scores, end states,
        calibration pairs and oracle ceilings, per strategy."""
        from conflicts.replay import ReplayConfig, replay

        truth_family_run = opts["family"] == "truth"
        runs: dict = {
            "real": {name: [] for name in strategies},
            "memory": {name: [] for name in strategies},
            "pairs": {name: [] for name in strategies},
            "ends": {},
            "ceilings": [],
            "events": 0,
        }
        for seed in seeds:
            scenario = generate(replace(scen_cfg, seed=seed))
            runs["events"] += len(scenario.events)
            for name in strategies:
                started = time.monotonic()
                cfg = ReplayConfig(
                    strategy=name,
                    threshold=threshold,
                    settle_seconds=settle,
                    review_delay_seconds=opts["review_delay_hours"] * HOUR,
                    human_error_rate=opts["human_error"],
                    warmup_mode="live" if truth_family_run else opts["warmup"],
                    copy_detection=not opts["no_copy_detection"],
                    seed=seed,
                    review_until=scenario.warmup_end if truth_family_run else None,
                    sweep_seconds=opts["sweep_hours"] * HOUR,
                )
                outcome = replay(scenario, cfg)
                runs["real"][name].append(score(scenario, outcome))
                runs["pairs"][name].extend(calibration_pairs(scenario, outcome))
                end = end_state(scenario, outcome)
                ends = runs["ends"]
                ends[name] = ends[name] + end if name in ends else end
                if name == "hybrid":
                    runs["ceilings"].append(oracle_ceiling(scenario, outcome))
                self.stderr.write(
                    f"  seed {seed} {name}: {len(scenario.events)} broadcasts in {time.monotonic() - started:.1f} s"
                )
                if opts["memory"]:
                    sim = SimulationConfig(
                        strategy=name,
                        threshold=threshold,
                        settle_seconds=settle,
                        review_delay_seconds=cfg.review_delay_seconds,
                        human_error_rate=cfg.human_error_rate,
                        warmup_mode=cfg.warmup_mode,
                        copy_detection=cfg.copy_detection,
                        seed=seed,
                    )
                    runs["memory"][name].append(score(scenario, simulate(scenario, sim)))
        return runs

    def _check(self, metrics, ends) -> list:
        """The product targets (and, for the truth family, the end-state ones), printed."""
        checks = check_targets(metrics)
        self.stdout.write("\ntargets (real path):")
        for target, ok in checks:
            value = getattr(metrics[target.strategy], target.metric)
            self.stdout.write(f"  [{'ok' if ok else 'MISS'}] {target.describe():40s} {value:.2%}")
        for name, e in ends.items():
            wrongful = metrics[name].wrongful_supersession
            for label, ok, value in (
                ("end-state right >= 0.95", e.accuracy >= 0.95, e.accuracy),
                ("end-state right >= majority vote", e.accuracy >= e.majority_accuracy, e.accuracy),
                ("wrongful supersession <= 0.01", wrongful <= 0.01, wrongful),
            ):
                checks.append((label, ok))
                self.stdout.write(f"  [{'ok' if ok else 'MISS'}] {name}.{label:34s} {value:.2%}")
        return checks

    def _png(self, path, diagrams) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            self.stderr.write(
                "matplotlib is not installed: no PNG (the table above is the diagram)"
            )
            return
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
        for name, d in diagrams.items():
            used = [b for b in d["bins"] if b["count"]]
            ax.plot(
                [b["predicted"] for b in used],
                [b["observed"] for b in used],
                marker="o",
                label=f"{name} (ECE {d['ece']:.3f})",
            )
        ax.set_xlabel("predicted probability of the winning claim")
        ax.set_ylabel("observed accuracy")
        ax.legend()
        fig.savefig(path, dpi=100)
        self.stdout.write(f"wrote {path}")


def _pooled_ceiling(ceilings: list) -> Ceiling | None:
    """The oracle ceilings of several seeds pooled, weighted by their conflicts."""
    if not ceilings:
        return None
    n = sum(c.conflicts for c in ceilings) or 1
    return Ceiling(
        conflicts=sum(c.conflicts for c in ceilings),
        accuracy=sum(c.accuracy * c.conflicts for c in ceilings) / n,
        coverage=ceilings[0].coverage,
        accuracy_at_coverage=sum(c.accuracy_at_coverage * c.conflicts for c in ceilings) / n,
    )
