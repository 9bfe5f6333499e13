"""An SDK worker process for the spool's fault tests: it broadcasts ``--count`` items,
``--per-cycle`` per cycle, through a spool, then keeps cycling until the spool is drained, and
exits 0.

Each item ``n`` has the subject ``<name>-<n>`` and the idempotency key ``<name>:<n>`` (derived
from its input, as docs/workers.md advises for restarts). ``--progress`` holds the next item
to broadcast, written after ``broadcast()`` returned (the item is then stored or spooled), so a
worker killed -9 and restarted resumes there; at most the item in flight is broadcast again,
with the same key.

    python -m tests.faults.spool_worker NAME --url URL --token T --spool PATH --progress PATH
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from kx_sdk import BaseWorker, HttpTransport, Spool


class Feeder(BaseWorker):
    jitter = 0.0

    def __init__(self, transport, *, count: int, per_cycle: int, progress: Path, **kw):
        super().__init__(transport, **kw)
        self.count = count
        self.per_cycle = per_cycle
        self.progress = progress
        self.next = int(progress.read_text()) if progress.exists() else 0

    def step(self, **_):
        if self.next >= self.count:
            if self.spool.depth() == 0 and not self.offline:
                self.stop()  # all sent, all stored
            return
        for n in range(self.next, min(self.next + self.per_cycle, self.count)):
            self.broadcast(
                "risk_pattern",
                {"pattern": f"{self.name}-{n}", "risk_level": "high"},
                0.6,
                idempotency_key=f"{self.name}:{n}",
            )
            self.next = n + 1
            tmp = self.progress.with_suffix(".tmp")
            tmp.write_text(str(self.next))
            os.replace(tmp, self.progress)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--spool", required=True)
    parser.add_argument("--progress", required=True)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--per-cycle", type=int, default=1)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # worker= given: no GET workers/me, so the worker starts during an outage too.
    transport = HttpTransport(
        args.url, args.token, worker=args.name, retries=2, backoff=0.1, max_backoff=0.5, timeout=5
    )
    worker = Feeder(
        transport,
        count=args.count,
        per_cycle=args.per_cycle,
        progress=Path(args.progress),
        interval=args.interval,
        spool=Spool(args.spool),
        spool_retry=0.5,
        spool_retry_max=2.0,
    )
    worker.install_signal_handlers()
    worker.run()
    print(f"{args.name}: done, next={worker.next}, spool={worker.spool.status()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
