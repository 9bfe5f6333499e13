"""``python bench/server_choice.py``: the same HTTP operations under daphne and under uvicorn,
ratios in one run (docs/performance.md, "Server choice").

Creates a PostgreSQL database ``kx_servers_<pid>`` (dropped at the end), COPYs ``--rows``
items, starts ``--servers`` daphne and as many uvicorn processes (httptools + websockets) on
the same database and Redis, and measures, ``--reps`` times with the order alternating,
each operation with ``--clients`` keep-alive clients on each server kind in turn: three
uncached typical queries (``make bench``'s q1, q3, q5), a single broadcast, and ``GET types``
(the registry: a small request that reads no items, so mostly server overhead). Prints the median over the rounds of the
per-round medians and P95s, and the median ratio uvicorn/daphne. The WebSocket fan-out
comparison is ``bench/ws/bench.py --server``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.private_db import private_database  # noqa: E402
from bench.runner import BUILTIN, Http, Servers, measure  # noqa: E402

SERVERS = ["daphne", "uvicorn"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--servers", type=int, default=2, help="processes of each server kind")
    p.add_argument("--requests", type=int, default=20, help="requests per client per op")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--port", type=int, default=8400)
    p.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_URL", "postgres://root@127.0.0.1:5432")
    )
    p.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")
    )
    args = p.parse_args(argv)

    with private_database(args.pg_url, "kx_servers", announce=True) as url:
        rows = _in_database(args, url)
    print(
        f"server choice: {args.rows} items, {args.clients} clients, {args.servers} processes "
        f"each, medians of {args.reps} rounds, {os.cpu_count()} CPUs (client ms)"
    )
    print(
        f"{'operation':<28} | {'daphne p50':>10} {'p95':>7} | {'uvicorn p50':>11} {'p95':>7} | uv/da p50"
    )
    for op, r in rows.items():
        d, u = r["daphne"], r["uvicorn"]
        print(
            f"{op:<28} | {d['p50']:>10.1f} {d['p95']:>7.1f} | {u['p50']:>11.1f} {u['p95']:>7.1f} "
            f"| {r['ratio']:.2f}x"
        )
    return 0


def _in_database(args, url: str) -> dict:
    """Both fleets against the private database at ``url``: the rows of the table."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": args.redis_url,
        "KE_INSTANCE": f"servers{os.getpid()}",
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "KE_SERVE_STATIC": "false",
        "DJANGO_DEBUG": "false",
        "KE_CACHE_ENABLED": "false",
    }
    os.environ.update(
        {k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "KE_INSTANCE", "DJANGO_SETTINGS_MODULE")}
    )
    log_dir = ROOT / ".bench"
    log_dir.mkdir(exist_ok=True)
    fleets = {
        kind: Servers([args.port + 10 * k + i for i in range(args.servers)], env, log_dir, kind)
        for k, kind in enumerate(SERVERS)
    }
    try:
        import django

        django.setup()
        return _run(args, fleets, env)
    finally:
        for fleet in fleets.values():
            fleet.stop()


def _run(args, fleets: dict, env: dict) -> dict:
    import psycopg2
    from django.core.management import call_command

    from bench.seed import seed_items
    from identity.actions import do_create_worker

    call_command("migrate", verbosity=0)
    tokens, workers = {}, {}
    names = [*BUILTIN, *(f"probe-{i}" for i in range(max(0, args.clients - len(BUILTIN))))]
    for name in names:
        workers[name], tokens[name] = do_create_worker(name)
    raw = psycopg2.connect(env["DATABASE_URL"])
    seed_items(raw, args.rows, [w.pk for w in workers.values()])
    raw.close()
    from django.db import connections

    connections.close_all()
    for fleet in fleets.values():
        fleet.start(cache_enabled=False)
    from knowledge.registry import registry

    types = registry.names()
    n = 0

    def op_fns():
        def q1(i, j):
            t = types[(i * 1000 + j) % len(types)]
            qs = urlencode({"types": t, "min_freshness": 0.5})
            return "GET", f"/api/knowledge/query?{qs}", tokens["think"], None

        def q3(i, j):
            qs = urlencode({"sources": BUILTIN[(i * 1000 + j) % 5], "urgency": "high"})
            return "GET", f"/api/knowledge/query?{qs}", tokens["think"], None

        def q5(i, j):
            name = BUILTIN[i % 5]
            ts = ",".join(sorted(registry.interests_of(name)))
            qs = urlencode({"types": ts, "min_freshness": 0.3})
            return "GET", f"/api/knowledge/query?{qs}", tokens[name], None

        def single(i, j):
            nonlocal n
            n += 1
            who = names[i % len(names)]
            body = {
                "knowledge_type": "issue_pattern",
                "confidence": 0.7,
                "payload": {
                    "rule": "long_function",
                    "location": f"servers/{who}/{n}/{j}",
                    "severity": "high",
                },
            }
            return "POST", "/api/knowledge/broadcast", tokens[who], body

        def types_(i, j):
            return "GET", "/api/knowledge/types", tokens["think"], None

        return {
            "query: one type + freshness": q1,
            "query: source + urgency": q3,
            "query: worker's relevant": q5,
            "broadcast (single)": single,
            "GET types (no item query)": types_,
        }

    ops = op_fns()
    got: dict[str, dict[str, list]] = {op: {s: [] for s in SERVERS} for op in ops}
    https = {kind: Http(fleet.ports) for kind, fleet in fleets.items()}
    for rep in range(args.reps):
        order = SERVERS if rep % 2 == 0 else SERVERS[::-1]
        for op, fn in ops.items():
            for kind in order:
                r = measure(op, args.clients, args.requests, fn, https[kind])
                if r.errors:
                    print(f"{kind} {op}: {r.errors} errors ({r.first_error})", flush=True)
                got[op][kind].append((r.median("client_ms"), r.pct("client_ms", 0.95)))
    rows = {}
    for op, by in got.items():
        row = {}
        for kind in SERVERS:
            row[kind] = {
                "p50": statistics.median(x[0] for x in by[kind]),
                "p95": statistics.median(x[1] for x in by[kind]),
            }
        row["ratio"] = statistics.median(
            u[0] / d[0] for d, u in zip(by["daphne"], by["uvicorn"], strict=True)
        )
        rows[op] = row
    return rows


if __name__ == "__main__":
    sys.exit(main())
