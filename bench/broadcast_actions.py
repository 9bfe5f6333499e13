"""In-process timing of the broadcast pipeline, without HTTP (docs/architecture.md).

    python -m bench.broadcast_actions [--pg-url postgres://root@127.0.0.1:5432]

Creates a scratch PostgreSQL database (dropped at the end), then times ``do_broadcast`` 300
times and ``do_broadcast_many`` on 8 x 500 new items, then on the same 8 x 500 again
(refreshes). Prints the medians as JSON. Run it on two checkouts in turn to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from bench.private_db import private_database


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_URL", "postgres://root@127.0.0.1:5432")
    )
    p.add_argument("--singles", type=int, default=300)
    p.add_argument("--bulks", type=int, default=8)
    args = p.parse_args()

    with private_database(args.pg_url, "kx_broadcast") as url:
        os.environ["DATABASE_URL"] = url
        os.environ.pop("REDIS_URL", None)
        os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
        print(json.dumps(_measure(args.singles, args.bulks)))


def _measure(singles: int, bulks: int) -> dict:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from identity.actions import do_create_worker
    from knowledge.actions import BroadcastInput, do_broadcast, do_broadcast_many

    call_command("migrate", verbosity=0)
    worker, _ = do_create_worker("bench")

    def item(i: int) -> BroadcastInput:
        payload = {"rule": "long_function", "location": f"m{i}.py::f", "severity": "high"}
        return BroadcastInput("issue_pattern", payload, 0.7)

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1000

    single = [timed(lambda i=i: do_broadcast(worker, item(100_000 + i))) for i in range(singles)]
    new, refresh = [], []
    for j in range(bulks):
        items = [item(j * 500 + k) for k in range(500)]
        new.append(timed(lambda items=items: do_broadcast_many(worker, items)))
        refresh.append(timed(lambda items=items: do_broadcast_many(worker, items)))
    connections.close_all()
    return {
        "single_ms": round(statistics.median(single), 2),
        "bulk_500_new_ms": round(statistics.median(new), 1),
        "bulk_500_refresh_ms": round(statistics.median(refresh), 1),
    }


if __name__ == "__main__":
    main()
