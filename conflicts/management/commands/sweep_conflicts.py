"""The conflicts sweep: re-estimate source trust from all the evidence, then re-evaluate
unsettled contradictions (settle window passed, or now above the threshold).

    python manage.py sweep_conflicts --once
    python manage.py sweep_conflicts --interval 60      # loop until SIGTERM / SIGINT

Several sweepers may run: each conflict is re-checked under its lock.
"""

from __future__ import annotations

import signal
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from conflicts.reliability import sweep


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="one sweep, then exit")
        parser.add_argument(
            "--interval", type=float, default=60.0, help="seconds between sweeps (default 60)"
        )

    def handle(self, *args, **opts):
        stop = {"now": False}

        def _stop(signum, frame):
            stop["now"] = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        while True:
            done = sweep()
            if opts["verbosity"] > 1 or opts["once"]:
                self.stdout.write(f"re-evaluated {done} conflict(s)")
            if opts["once"] or stop["now"]:
                return
            deadline = time.monotonic() + opts["interval"]
            while not stop["now"] and time.monotonic() < deadline:
                time.sleep(min(1.0, opts["interval"]))
            close_old_connections()
