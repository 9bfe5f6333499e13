"""``python -m bench.fanout_checks``: CPU the relay's fan-out spends on the event loop, in
process (no sockets, no database): ``--sockets`` live connections of distinct workers
following one source, a batch of ``--batch`` events none of them wants (a busy fleet's
writes), then single events all of them want. docs/performance.md, "The fleet's events
held the event loop"."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sockets", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from knowledge.events import FeedFilter
    from knowledge.models import Event
    from knowledge.relay import Connection, Relay, _relays

    loop = asyncio.new_event_loop()
    relay = Relay(loop)
    conns = []
    for i in range(args.sockets):
        conn = Connection(label=f"worker:w{i}", viewer=f"w{i}", max_queue=1_000_000)
        conn.filter = FeedFilter(sources=frozenset({"bench"}), viewer=f"w{i}")
        conn.live = True
        conns.append(conn)
    relay.connections.update(conns)
    seq = 0
    unwanted, wanted = [], []
    for _ in range(args.repeat):
        batch = []
        for _ in range(args.batch):
            seq += 1
            batch.append(
                Event(
                    seq=seq,
                    kind="knowledge_broadcast",
                    knowledge_type="issue_pattern",
                    source="fleet",
                )
            )
        started = time.process_time()
        relay._fan_out(batch, seq)
        unwanted.append(time.process_time() - started)
        seq += 1
        one = [
            Event(
                seq=seq, kind="knowledge_broadcast", knowledge_type="risk_pattern", source="bench"
            )
        ]
        started = time.process_time()
        relay._fan_out(one, seq)
        wanted.append(time.process_time() - started)
        for conn in conns:
            conn.queue.clear()
    _relays.discard(relay)
    loop.close()
    print(
        f"{args.sockets} sockets: a batch of {args.batch} unwanted events "
        f"{1000 * statistics.median(unwanted):.1f} ms CPU (median of {args.repeat}); "
        f"one wanted event {1000 * statistics.median(wanted):.2f} ms CPU"
    )


if __name__ == "__main__":
    main()
