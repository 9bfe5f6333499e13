"""``manage.py run_worker NAME --repo PATH [--once] [--interval S] [--transport inprocess|http]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from django.core.management.base import BaseCommand, CommandError

from workers.builtin.workers import WORKER_CLASSES


class Command(BaseCommand):
    help = "Run one built-in worker (analysis, dream, recall, think, learning) on a git checkout."

    def add_arguments(self, parser):
        parser.add_argument("name", choices=sorted(WORKER_CLASSES))
        parser.add_argument("--repo", required=True, help="path of the git checkout to work on")
        parser.add_argument("--once", action="store_true", help="run one cycle and exit")
        parser.add_argument("--max-cycles", type=int, default=None)
        parser.add_argument(
            "--interval", type=float, default=None, help="seconds between cycles (default 30)"
        )
        parser.add_argument(
            "--history",
            type=int,
            default=0,
            help="first walk the last N commits up to HEAD, one per cycle (a fresh fleet "
            "has work at once; default 0: HEAD only)",
        )
        parser.add_argument("--transport", choices=["inprocess", "http"], default="inprocess")
        parser.add_argument("--url", default=os.environ.get("KE_URL", "http://127.0.0.1:8000"))
        parser.add_argument(
            "--token", default=os.environ.get("KE_WORKER_TOKEN"), help="worker token (http)"
        )
        parser.add_argument(
            "--no-exchange", action="store_true", help="ignore other workers' knowledge"
        )
        # run_workers passes this: once the worker has stopped cleanly (its heartbeat written,
        # its connections closed), skip the interpreter's teardown of a large heap, which
        # took 1-3 s per worker here and pushed the fleet's SIGTERM past 5 s.
        parser.add_argument("--exit-fast", action="store_true", help=argparse.SUPPRESS)

    def handle(self, *args, **opts):
        from kx_sdk import HttpTransport, SDKError
        from workers.builtin.repo import RepoView
        from workers.engine.gitrepo import GitError
        from workers.inprocess import InProcessTransport

        if opts["interval"] is not None and opts["interval"] < 0:
            raise CommandError("--interval must be >= 0")
        if opts["history"] < 0:
            raise CommandError("--history must be >= 0")
        if not logging.getLogger().handlers:
            logging.basicConfig(
                level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
            )
        name = opts["name"]
        try:
            view = RepoView(opts["repo"])
        except GitError as exc:
            raise CommandError(str(exc)) from exc
        on_done = None
        try:
            if opts["transport"] == "http":
                if not opts["token"]:
                    raise CommandError("--transport http needs --token (or KE_WORKER_TOKEN)")
                transport = HttpTransport(opts["url"], opts["token"])
                if transport.worker_name != name:
                    raise CommandError(
                        f"the token belongs to {transport.worker_name!r}, not {name!r}"
                    )
            else:
                from identity.actions import do_ensure_builtin_workers
                from workers.actions import do_mark_analysed, do_register_project

                do_ensure_builtin_workers()
                transport = InProcessTransport(name)
                project = do_register_project(view.path)
                if name == "analysis":
                    on_done = lambda sha: do_mark_analysed(project, sha)  # noqa: E731
        except SDKError as exc:
            raise CommandError(f"cannot reach the exchange: {exc}") from exc
        worker = WORKER_CLASSES[name](
            transport,
            view=view,
            on_done=on_done,
            interval=opts["interval"],
            history=opts["history"],
            exchange=not opts["no_exchange"],
        )
        worker.install_signal_handlers()
        stats = worker.run(once=opts["once"], max_cycles=opts["max_cycles"])
        self.stdout.write(
            f"{name}: {stats.cycles} cycles, {stats.broadcast} broadcast, {stats.received} received, "
            f"{stats.errors} errors"
        )
        if opts["exit_fast"]:
            from django.db import connections

            connections.close_all()
            self.stdout.flush()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
