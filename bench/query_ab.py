"""``python -m bench.query_ab``: uncached typical queries, two checkouts and the naive baseline,
interleaved request by request through daphne.

Runs in an existing, seeded database (``--dsn``; ``python -m bench.profile --rows N --keep-db``
leaves one, seeded as ``make bench`` seeds). One daphne process with ``bench.settings`` and the
cache off from this checkout, one from ``--against DIR`` (the same database), one client. For
each round, each query kind and each request ``j`` (``bench.runner.typical_query``: the same
terms as ``make bench``), this checkout, the other one and, with ``--naive``, the naive
baseline (served by this checkout's process) answer the same query in turn, the order
rotating each round, so the three see the same load. Prints the medians of ``X-Server-Ms`` and
of the time waiting for the database (``X-DB-Ms``: where a slow phase went) and of the client
time, and the ratios the targets are set on: naive/ours (client, as
``make bench``'s naive/our column) and this/other. The answers of the two checkouts are
compared (ids, in order) for every request.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from urllib.parse import urlencode

import django
from django.db import connections

from bench.hit import _get, _through_daphne
from bench.profile import _workers
from bench.runner import BUILTIN, ROOT, bench_environment, typical_query


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.query_ab", description=__doc__.split("\n")[0])
    p.add_argument("--dsn", required=True, help="a seeded database (bench.profile --keep-db)")
    p.add_argument("--against", required=True, help="the other checkout (its .venv is used)")
    p.add_argument("--kinds", default="q4", help="typical queries, e.g. q3,q4")
    p.add_argument("--naive", action="store_true", help="also time the naive baseline")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--serial", type=int, default=20, help="requests per kind, server and round")
    p.add_argument("--port", type=int, default=8780)
    p.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")
    )
    args = p.parse_args(argv)
    env = bench_environment(args.dsn, args.redis_url, f"ab{os.getpid()}", KE_CACHE_ENABLED="false")
    django.setup()
    _, tokens = _workers(BUILTIN)
    connections.close_all()
    _through_daphne(args, env, tokens, measure=_measure)
    return 0


def _measure(args, conns: dict, tokens: dict[str, str]) -> None:
    from knowledge.registry import registry  # the type registry needs the apps loaded

    types = registry.names()
    kinds = [k for k in args.kinds.split(",") if k]
    ways = ["this", "other", *(["naive"] if args.naive else [])]
    samples = {(way, kind): ([], [], []) for way in ways for kind in kinds}
    differ = 0

    def ask(way, kind, j):
        ours, naive, who = typical_query(kind, 0, j, types)
        if way == "naive":
            path = "/bench/naive/items/?" + urlencode({**naive, "status": "active"})
            conn = conns["this"]
        else:
            path, conn = "/api/knowledge/query?" + urlencode(ours), conns[way]
        client_ms, server_ms, status, headers, body = _get(conn, path, tokens[who or "think"])
        assert status == 200, body[:300]
        db_ms = {name.lower(): value for name, value in headers.items()}.get("x-db-ms", "nan")
        return client_ms, server_ms, float(db_ms), body

    for kind in kinds:  # warm both processes (plans, connections, per-process memos)
        for way in ways:
            for j in range(2):
                ask(way, kind, 10_000 + j)
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        order = ways[r % len(ways) :] + ways[: r % len(ways)]
        for kind in kinds:
            for j in range(args.serial):
                ids = {}
                for way in order:
                    client_ms, server_ms, db_ms, body = ask(way, kind, r * args.serial + j)
                    samples[(way, kind)][0].append(server_ms)
                    samples[(way, kind)][1].append(client_ms)
                    samples[(way, kind)][2].append(db_ms)
                    if way != "naive":
                        ids[way] = [item["id"] for item in json.loads(body)["results"]]
                differ += ids["this"] != ids["other"]
    load.append(os.getloadavg()[0])
    print(
        f"load {load[0]:.1f} -> {load[1]:.1f}; {args.rounds} rounds x {args.serial} requests per "
        f"kind and way, interleaved; 'this' = {ROOT}, 'other' = {args.against}; "
        f"answers differing (ids in order): {differ}"
    )
    print(
        f"{'kind':<5} {'way':<6} {'srv med':>8} {'db med':>8} {'cli med':>8} {'naive/way (cli)':>16} "
        f"{'this/other (cli)':>17}"
    )
    for kind in kinds:
        med = {w: [statistics.median(x) for x in samples[(w, kind)]] for w in ways}
        for way in ways:
            srv, cli, db = med[way]
            ratio = f"{med['naive'][1] / cli:.2f}" if args.naive and way != "naive" else "-"
            ab = f"{cli / med['other'][1]:.2f}" if way == "this" else "-"
            print(f"{kind:<5} {way:<6} {srv:>8.2f} {db:>8.2f} {cli:>8.2f} {ratio:>16} {ab:>17}")


if __name__ == "__main__":
    raise SystemExit(main())
