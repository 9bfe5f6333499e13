"""Retention soak: 1,000,000 events through the pruner keep the event table within its bound.

    python bench/prune_soak.py [--events 1000000] [--days 60] [--retention 30]

Starts a private PostgreSQL cluster (initdb into a temporary directory, a spare port; the
machine's shared server is never touched), migrates it, then simulates ``--days`` days: each
day inserts ``events / days`` events dated that day (one INSERT ... SELECT generate_series),
then runs the pruner's unit of work (knowledge.retention.prune_once, the code ``manage.py
prune`` runs) with the clock at the end of that day until nothing is left to prune. It prints
the rows and the table's size after every few days and the figures for docs/operations.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults.services import PgCluster  # noqa: E402

INSERT = """
INSERT INTO knowledge_event (kind, knowledge_type, source, item_id, is_targeted, targets, data,
                             created_at)
SELECT 'knowledge_broadcast', 'risk_pattern', 'think', i, false, '[]'::jsonb,
       jsonb_build_object('item', jsonb_build_object('id', i, 'subject', 'soak ' || i,
                          'payload', jsonb_build_object('pattern', repeat('x', 120)))),
       %(start)s + (i - %(first)s) * %(step)s * interval '1 second'
FROM generate_series(%(first)s, %(last)s) AS i
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--retention", type=int, default=30)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()

    cluster = PgCluster().init().start()
    try:
        cluster.migrate("kx_soak")
        os.environ["DATABASE_URL"] = cluster.url("kx_soak")
        os.environ.pop("REDIS_URL", None)
        os.environ["KE_EVENT_RETENTION_DAYS"] = str(args.retention)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        import django

        django.setup()
        return soak(args)
    finally:
        cluster.destroy()


def soak(args) -> int:
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from knowledge.events import log_position
    from knowledge.retention import prune_once, reclaim_space

    per_day = args.events // args.days
    bound = (args.retention + 1) * per_day
    start = timezone.now() - timedelta(days=args.days)
    inserted = pruned = 0
    max_rows = max_size = 0
    prune_seconds = 0.0
    insert_seconds = vacuum_seconds = 0.0
    print(
        f"{args.events:,} events over {args.days} days ({per_day:,}/day), retention "
        f"{args.retention} d: bound {bound:,} rows"
    )
    print(f"{'day':>4} {'inserted':>10} {'pruned':>10} {'rows':>9} {'table MB':>9} {'horizon':>9}")
    for day in range(args.days):
        day_start = start + timedelta(days=day)
        first, last = inserted + 1, inserted + per_day
        t0 = time.perf_counter()
        with connection.cursor() as cur:
            cur.execute(
                INSERT, {"start": day_start, "first": first, "last": last, "step": 86400 / per_day}
            )
        insert_seconds += time.perf_counter() - t0
        inserted += per_day
        now = day_start + timedelta(days=1)
        t0 = time.perf_counter()
        while True:
            n = prune_once(now=now, batch=args.batch).events
            pruned += n
            if not n:
                break
        prune_seconds += time.perf_counter() - t0
        t0 = time.perf_counter()
        reclaim_space()  # what `manage.py prune` does at the end of a pass that deleted rows
        vacuum_seconds += time.perf_counter() - t0
        with connection.cursor() as cur:
            cur.execute(
                "SELECT count(*), pg_total_relation_size('knowledge_event') FROM knowledge_event"
            )
            rows, size = cur.fetchone()
        max_rows, max_size = max(max_rows, rows), max(max_size, size)
        if day % 5 == 4 or day == args.days - 1:
            pos = log_position()
            print(
                f"{day + 1:>4} {inserted:>10,} {pruned:>10,} {rows:>9,} {size / 2**20:>9.1f} "
                f"{pos.pruned_through:>9,}"
            )
    print()
    print(
        f"inserted {inserted:,} events, pruned {pruned:,}; rows at most {max_rows:,} "
        f"(bound {bound:,}); table at most {max_size / 2**20:.1f} MB"
    )
    print(
        f"insert {inserted / insert_seconds:,.0f} events/s; prune {pruned / max(prune_seconds, 1e-9):,.0f} "
        f"events/s ({prune_seconds:.1f} s in batches of {args.batch:,}); VACUUM "
        f"{vacuum_seconds:.1f} s in all"
    )
    ok = max_rows <= bound
    print("WITHIN BOUND" if ok else "OVER BOUND")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
