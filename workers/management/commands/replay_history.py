"""``manage.py replay_history --repo PATH --commits N [--no-exchange] [--json] [--db FILE]``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Walk a git repository's history oldest to newest and run the five built-in workers at "
        "each commit through the real exchange; report knowledge flow, decisions, decision "
        "quality (Brier) and reception overhead."
    )

    def add_arguments(self, parser):
        parser.add_argument("--repo", required=True, help="path of a git checkout")
        parser.add_argument(
            "--commits", type=int, default=None, help="the last N commits (default: all)"
        )
        parser.add_argument(
            "--no-exchange", action="store_true", help="workers see only their own knowledge"
        )
        parser.add_argument(
            "--compare", action="store_true", help="run both modes (needs --db) and compare"
        )
        parser.add_argument(
            "--json", action="store_true", help="print the report as one JSON object"
        )
        parser.add_argument(
            "--db",
            help="run on a fresh SQLite database at this path (deleted and migrated first); "
            "with --compare, PATH.exchange and PATH.no-exchange",
        )
        parser.add_argument(
            "--allow-existing", action="store_true", help="run even if the database holds knowledge"
        )
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument(
            "--prior-repo",
            action="append",
            default=[],
            metavar="PATH",
            help="another project (a git checkout) whose Learning broadcasts into the same "
            "exchange as its own source, its commits interleaved by date with the replayed "
            "ones (only what it observed before each decision); repeatable; ignored "
            "without exchange",
        )
        parser.add_argument(
            "--prior-commits",
            type=int,
            default=None,
            help="the last N commits of each prior repository dated before the replayed "
            "repository's last commit (default: all of them)",
        )
        parser.add_argument(
            "--sweep-every",
            type=int,
            default=None,
            help="commits between two conflict sweeps (trust re-estimate and re-evaluation), "
            "as the sweep process runs in production; 0 = never (default 10)",
        )

    def handle(self, *args, **opts):
        if opts["commits"] is not None and opts["commits"] < 1:
            raise CommandError("--commits must be at least 1")
        if not Path(opts["repo"]).is_dir():
            raise CommandError(f"--repo {opts['repo']!r}: no such directory")
        for prior in opts["prior_repo"]:
            if not Path(prior).is_dir():
                raise CommandError(f"--prior-repo {prior!r}: no such directory")
        if opts["prior_commits"] is not None and opts["prior_commits"] < 1:
            raise CommandError("--prior-commits must be at least 1")
        if opts["compare"]:
            if not opts["db"]:
                raise CommandError(
                    "--compare needs --db PATH (each mode runs on its own fresh database)"
                )
            with_ = self._in_fresh_db(opts, f"{opts['db']}.exchange", exchange=True)
            without = self._in_fresh_db(opts, f"{opts['db']}.no-exchange", exchange=False)
            from workers.builtin.replay import compare

            report = {
                "with_exchange": with_,
                "without_exchange": without,
                "comparison": compare(with_, without),
            }
            return self._emit(report, opts)
        if opts["db"]:
            report = self._in_fresh_db(opts, opts["db"], exchange=not opts["no_exchange"])
            return self._emit(report, opts)

        from knowledge.models import KnowledgeItem
        from workers.builtin.replay import replay_history
        from workers.engine.gitrepo import GitError

        if KnowledgeItem.objects.exists() and not opts["allow_existing"]:
            raise CommandError(
                "this database already holds knowledge; a replay must start from a fresh one "
                "(use --db /tmp/replay.sqlite3, or --allow-existing to mix them)"
            )
        try:
            report = replay_history(
                opts["repo"],
                commits=opts["commits"],
                exchange=not opts["no_exchange"],
                progress=not opts["no_progress"],
                prior_repos=opts["prior_repo"],
                prior_commits=opts["prior_commits"],
                **({} if opts["sweep_every"] is None else {"sweep_every": opts["sweep_every"]}),
            )
        except (GitError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        return self._emit(report, opts)

    def _in_fresh_db(self, opts, path: str, *, exchange: bool) -> dict:
        """Run the replay in a child process on a new SQLite file; return its JSON report."""
        db = Path(path).resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env["SQLITE_PATH"] = str(db)
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        migrated = subprocess.run(
            [sys.executable, manage, "migrate", "--noinput", "-v0"], env=env, check=False
        )
        if migrated.returncode != 0:
            raise CommandError(f"could not create the database {db}")
        cmd = [sys.executable, manage, "replay_history", "--repo", opts["repo"], "--json"]
        if opts["commits"] is not None:
            cmd += ["--commits", str(opts["commits"])]
        if not exchange:
            cmd.append("--no-exchange")
        if opts["no_progress"]:
            cmd.append("--no-progress")
        if opts["sweep_every"] is not None:
            cmd += ["--sweep-every", str(opts["sweep_every"])]
        for prior in opts["prior_repo"]:
            cmd += ["--prior-repo", prior]
        if opts["prior_commits"] is not None:
            cmd += ["--prior-commits", str(opts["prior_commits"])]
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise CommandError(f"replay on {db} failed (exit {proc.returncode})")
        report = json.loads(proc.stdout)
        report["database"] = str(db)
        return report

    def _emit(self, report: dict, opts) -> None:
        if opts["json"]:
            self.stdout.write(json.dumps(report))
            return
        self.stdout.write(render(report))


def _quality_line(q: dict) -> str:
    if not q.get("n"):
        return "no scored predictions"
    ci = q.get("ci") or {}

    def interval(key: str) -> str:
        return f" [{ci[key][0]:+.3f}, {ci[key][1]:+.3f}]" if ci.get(key) else ""

    auc = "n/a" if q.get("auc") is None else f"{q['auc']:.3f}{interval('auc')}"
    return (
        f"Brier {q['brier']:.4f} (base-rate forecast {q['reference_brier']:.4f})  "
        f"skill {q['brier_skill']:+.3f}{interval('brier_skill')}  AUC {auc}  "
        f"ECE {q['ece']:.4f}  n={q['n']}  base rate {q['base_rate']:.3f}"
    )


def render(report: dict) -> str:
    if "comparison" in report:
        c = report["comparison"]
        lines = [
            render(report["with_exchange"]),
            "",
            render(report["without_exchange"]),
            "",
            "== comparison",
        ]
        lines.append(f"with exchange:    {_quality_line(c['with_exchange'])}")
        lines.append(f"without exchange: {_quality_line(c['without_exchange'])}")
        if "skill_gain" in c:
            lines.append(
                f"skill gained with exchange {c['skill_gain']:+.3f}  "
                f"(Brier improvement {100 * c['brier_improvement']:.1f}%)"
            )
        return "\n".join(lines)
    mode = "with exchange" if report["exchange"] else "WITHOUT exchange"
    lines = [
        f"== replay of {report['commits']} commits of {report['repo']} ({mode})",
        f"{report['seconds']}s ({report['ms_per_commit']} ms/commit), failed cycles: {report['failed_cycles']}",
        "",
        f"{'worker':<10} {'broadcast':>9} {'skipped':>8} {'received':>9} {'cycle s':>8} {'recv s':>7} {'overhead':>8}",
    ]
    for name, w in report["workers"].items():
        lines.append(
            f"{name:<10} {w['broadcast']:>9} {w['unchanged_skipped']:>8} {w['received']:>9} "
            f"{w['cycle_seconds']:>8.2f} {w['reception_seconds']:>7.2f} {100 * w['reception_overhead']:>7.1f}%"
        )
    lines.append("")
    for name, w in report["workers"].items():
        if w["broadcast_by_type"]:
            sent = ", ".join(f"{k} {v}" for k, v in w["broadcast_by_type"].items())
            lines.append(f"{name} broadcast: {sent}")
        if w["received_by_type"]:
            got = ", ".join(f"{k} {v}" for k, v in w["received_by_type"].items())
            lines.append(f"{name} received: {got}")
        if w["last_error"]:
            lines.append(f"{name} last error: {w['last_error']}")
    lines.append("")
    lines.append(f"outcomes: {report['outcomes']}")
    lines.append(f"decisions: {report['decisions']}")
    lines.append(f"conflicts: {report['conflicts']}")
    for prior in report.get("prior_projects") or ():
        lines.append(
            f"prior project {prior['source']}: {prior['commits']} commits replayed before the "
            f"decisions they precede, outcomes {prior['outcomes']}, "
            f"in Think's view {prior['seen_by_think']}"
        )
    lines.append(
        f"decision quality (Think's predictions vs Learning's outcomes): {_quality_line(report['decision_quality'])}"
    )
    ro = report["reception_overhead"]
    lines.append(
        f"reception overhead: {100 * ro['ratio']:.2f}% ({ro['reception_seconds']}s of {ro['cycle_seconds']}s)"
    )
    return "\n".join(lines) + "\n"
