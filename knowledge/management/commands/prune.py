"""``manage.py prune [--interval S]``: apply retention to events and items (knowledge/retention.py).

One pass by default (until nothing is left to prune); with ``--interval S`` it loops until
SIGTERM/SIGINT: one batch per unit of work, a sleep of S seconds when there is nothing to do.
A signal is honoured between batches, so it stops within one batch (a transaction that either
commits or rolls back whole).
"""

from __future__ import annotations

import signal
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from knowledge.retention import prune_once, reclaim_space


class Command(BaseCommand):
    help = "Delete events past event_retention_days and items the registry's persistence drops."

    def add_arguments(self, parser):
        parser.add_argument(
            "--interval", type=float, default=0, help="seconds between passes (0 = one pass)"
        )
        parser.add_argument("--batch", type=int, default=10_000, help="rows per unit of work")

    def handle(self, interval: float, batch: int, **options):
        self.stopping = False
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.stdout.write(f"pruner running (interval {interval}s, batch {batch})")
        self.stdout.flush()
        deleted = 0
        while not self.stopping:
            try:
                result = prune_once(batch=batch)
                if not result.total and deleted:
                    reclaim_space()  # once at the end of a pass that deleted rows
                    deleted = 0
            except Exception as exc:  # a database outage: retry at the next pass
                if not interval:
                    raise CommandError(f"prune failed: {type(exc).__name__}: {exc}")
                self.stderr.write(f"prune failed: {type(exc).__name__}: {exc}")
                result = None
                close_old_connections()  # a broken connection is replaced at the next pass
            if result is not None and result.total:
                deleted += result.total
                self.stdout.write(f"pruned {result.events} events, {result.items} items")
                self.stdout.flush()
                continue  # more may be left: the next batch at once
            if not interval:
                break
            deadline = time.monotonic() + interval
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(min(0.2, interval))
            close_old_connections()  # between passes, as Django does between requests
        self.stdout.write("pruner stopped")

    def _stop(self, *args):
        self.stopping = True
