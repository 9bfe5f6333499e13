"""``python -m bench.bulk_http DSN``: `make bench`'s bulk row alone, with its CPU split.

Against an existing seeded database (one a ``python -m bench.profile --keep-db`` run left,
or a copy: ``CREATE DATABASE b TEMPLATE a``), it starts the bench's server processes (2
daphne, ``bench.settings``), then 8 clients send ``--batches`` bulks of 500 items each, of
the ten types, full answers, as ``python -m bench`` does. It prints the items/s, the server
median, and the CPU per bulk of the server processes (and of their event-loop threads), of
the database's client backends (PostgreSQL on this machine: ``/proc``) and of the client:
what a bulk costs where, which the items/s on a shared machine does not say. Run two
checkouts alternately against two copies of one database for an A/B
(docs/performance.md, "Bulk ingest at 1M").
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import django
from django.core.management import call_command

from bench.proc import cpu_seconds
from bench.profile import _backend_cpu, _workers
from bench.runner import Http, Servers, bench_environment, measure
from bench.seed import payload_for

NAMES = ["think", "learning", "analysis", "dream", "recall", "probe-1", "probe-2", "probe-3"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.bulk_http", description=__doc__.split("\n")[0]
    )
    p.add_argument("dsn", help="postgres://... of a seeded database (it is migrated first)")
    p.add_argument("--batches", type=int, default=6, help="bulks per client")
    p.add_argument("--port", type=int, default=8460)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/2")
    args = p.parse_args(argv)
    env = bench_environment(args.dsn, args.redis_url, f"bulkhttp{os.getpid()}")
    django.setup()
    from knowledge.registry import registry  # the type registry needs the apps loaded

    call_command("migrate", verbosity=0)
    _, tokens = _workers(NAMES)
    log_dir = Path(".bench")
    log_dir.mkdir(exist_ok=True)
    servers = Servers([args.port, args.port + 1], env, log_dir)
    servers.start(cache_enabled=False)
    try:
        http, rng, types = Http(servers.ports), random.Random(os.getpid()), registry.names()
        run = f"{os.getpid()}-{time.time():.0f}"

        def bulk(i: int, j: int):
            who = NAMES[i]
            items = [
                {
                    "knowledge_type": types[m % len(types)],
                    "payload": payload_for(types[m % len(types)], rng),
                    "confidence": 0.6,
                    "urgency": "normal",
                    "idempotency_key": f"{run}-{who}-{j}-{m}",
                }
                for m in range(500)
            ]
            return "POST", "/api/knowledge/broadcast/bulk", tokens[who], {"items": items}

        bodies = {(i, j): bulk(i, j) for i in range(8) for j in range(-1, args.batches)}
        for k in range(2):  # each server process once
            http.call(*bulk(0, 100 + k))
        pids = [proc.pid for proc in servers.procs]

        def snapshot():
            return (
                sum(cpu_seconds(pid) for pid in pids),
                sum(cpu_seconds(pid, thread=pid) for pid in pids),
                _backend_cpu(),
                time.process_time(),
            )

        load = os.getloadavg()[0]
        before = snapshot()
        result = measure("bulk", 8, args.batches, lambda i, j: bodies[(i, j)], http)
        after = snapshot()
        n = len(result.samples)
        if result.errors:
            raise SystemExit(f"{result.errors} errors: {result.first_error}")
        server, loop, db, client = ((a - b) * 1000 / n for a, b in zip(after, before, strict=True))
        print(
            f"items/s {n * 500 / result.wall_s:7,.0f}  srv med {result.median('server_ms'):6.1f} ms"
            f"  cpu per bulk: servers {server:5.1f} (event loops {loop:4.1f}) db {db:5.1f}"
            f" client {client:4.1f} ms  n={n} load {load:.2f} -> {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        return 0
    finally:
        servers.stop()


if __name__ == "__main__":
    raise SystemExit(main())
