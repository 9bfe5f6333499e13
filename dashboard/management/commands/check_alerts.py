"""The alert checker: the only process that evaluates alert rules.

Each pass calls ``dashboard.actions.do_check_alerts``: the rules' state and its flips are
stored (``AlertRule``, ``AlertFlip``), so a restart announces nothing twice; ``firing`` and
``resolved`` are also published as ``alert_fired`` events. One pass by default;
``--interval S`` loops until SIGTERM/SIGINT.
"""

from __future__ import annotations

import signal
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from dashboard.actions import do_check_alerts
from dashboard.timeseries import rollup


class Command(BaseCommand):
    help = "Evaluate alert rules; publish alert_fired events when a rule starts or stops firing."

    def add_arguments(self, parser):
        parser.add_argument(
            "--interval", type=float, default=0, help="seconds between passes (0 = once)"
        )

    def handle(self, interval: float, **options):
        self.stopping = False
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        passes = 0
        while True:
            try:
                self.check_once()
                rollup()  # the per-minute time series (dashboard/timeseries.py)
            except Exception as exc:  # one failed pass is retried at the next one
                self.stderr.write(f"alert check failed: {type(exc).__name__}: {exc}")
            passes += 1
            if passes == 1 and interval:
                self.stdout.write(f"alert checker running (every {interval}s)")
                self.stdout.flush()
            if not interval or self.stopping:
                break
            deadline = time.monotonic() + interval
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(min(0.5, interval))
            close_old_connections()  # between passes, as Django does between requests
        if interval:
            self.stdout.write("alert checker stopped")

    def check_once(self) -> None:
        result = do_check_alerts()
        for flip in result.flips:
            rule = flip.rule
            self.stdout.write(
                f"{flip.new_state.upper()} {rule.level} {rule.name}: {flip.message}"
                f" (was {flip.old_state})"
            )
        for name, error in result.errors.items():
            self.stderr.write(f"alert rule {name} failed: {error}")
        self.stdout.flush()

    def _stop(self, *args):
        self.stopping = True
