"""Evaluate the alert rules and announce changes as ``alert_fired`` events.

One pass by default; ``--interval S`` loops until SIGTERM/SIGINT. On start, rules already
firing are announced once (the previous state is not persisted).
"""

from __future__ import annotations

import signal
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from dashboard.actions import do_announce_alert
from dashboard.alerts import evaluate
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
        state: dict[str, bool] = {}
        passes = 0
        while True:
            try:
                state = self.check_once(state)
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

    def check_once(self, previous: dict[str, bool]) -> dict[str, bool]:
        current = {}
        for alert in evaluate():
            current[alert.name] = alert.firing
            if alert.firing != previous.get(alert.name, False):
                seq = do_announce_alert(alert)
                state = "FIRING" if alert.firing else "resolved"
                self.stdout.write(
                    f"{state} {alert.level} {alert.name}: {alert.message} (event {seq})"
                )
        return current

    def _stop(self, *args):
        self.stopping = True
