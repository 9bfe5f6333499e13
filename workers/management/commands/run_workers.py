"""``manage.py run_workers --all --repo PATH``: the five built-in workers as child processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from workers.builtin.workers import PIPELINE_ORDER


class Command(BaseCommand):
    help = (
        "Run built-in workers, each as its own `run_worker` process; SIGTERM/SIGINT stop them "
        "gracefully. A worker that exits on its own is restarted (with backoff)."
    )

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", help="workers to run (or --all)")
        parser.add_argument("--all", action="store_true", help="all five built-in workers")
        parser.add_argument("--repo", required=True)
        parser.add_argument("--interval", type=float, default=None)
        parser.add_argument(
            "--history", type=int, default=0, help="each worker first walks the last N commits"
        )
        parser.add_argument(
            "--grace",
            type=float,
            default=4.0,
            help="seconds a worker may take to finish its cycle after SIGTERM before it is "
            "killed (the whole stop stays within 5 s; a killed cycle is abandoned: its "
            "transactions roll back and its keyed broadcasts are redone on the next run)",
        )

    def handle(self, *args, **opts):
        names = list(PIPELINE_ORDER) if opts["all"] else opts["names"]
        unknown = sorted(set(names) - set(PIPELINE_ORDER))
        if unknown or not names:
            raise CommandError(f"name workers from {', '.join(PIPELINE_ORDER)} or pass --all")
        if not Path(opts["repo"]).is_dir():
            raise CommandError(f"--repo {opts['repo']!r}: no such directory")
        from identity.actions import do_ensure_builtin_workers
        from workers.actions import do_register_project

        do_ensure_builtin_workers()  # once here, so children do not race to create them
        do_register_project(opts["repo"])
        manage = str(Path(settings.BASE_DIR) / "manage.py")

        def spawn(name: str) -> subprocess.Popen:
            cmd = [
                sys.executable,
                manage,
                "run_worker",
                name,
                "--repo",
                opts["repo"],
                "--exit-fast",
                # Django's system checks ran once in this process; five children running
                # them again cost ~0.5 CPU-s each at every start (docs/performance.md).
                "--skip-checks",
            ]
            if opts["interval"] is not None:
                cmd += ["--interval", str(opts["interval"])]
            if opts["history"]:
                cmd += ["--history", str(opts["history"])]
            return subprocess.Popen(cmd)

        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True
            for proc in children.values():  # at once: their grace starts now, not after 0.2 s
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)

        children: dict[str, subprocess.Popen] = {}

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        children.update({name: spawn(name) for name in names})
        restarts = dict.fromkeys(names, 0)
        restart_at: dict[str, float] = {}
        self.stdout.write(f"running {', '.join(names)} on {opts['repo']}")
        self.stdout.flush()
        while not stopping:
            time.sleep(0.2)
            now = time.monotonic()
            for name, proc in list(children.items()):
                if stopping:
                    break  # children that exit now are stopping, not crashing
                if name in restart_at:
                    if now >= restart_at[name]:
                        del restart_at[name]
                        children[name] = spawn(name)
                elif proc.poll() is not None:
                    restarts[name] += 1
                    delay = min(30.0, 2.0 ** min(restarts[name], 5))
                    self.stderr.write(
                        f"{name} exited with {proc.returncode}; restarting in {delay:.0f}s"
                    )
                    restart_at[name] = now + delay
        deadline = time.monotonic() + opts["grace"]
        for name, proc in children.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.stderr.write(f"{name} did not stop within {opts['grace']}s; killed")
        self.stdout.write("workers stopped")
