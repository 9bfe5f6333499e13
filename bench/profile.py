"""``python -m bench.profile``: profile the hot paths in-process with pyinstrument.

Creates its own PostgreSQL database ``kx_prof_<pid>`` (dropped at the end), seeds ``--rows``
items with COPY (bench/seed.py), then drives the real Django stack (middleware, DRF,
authentication, throttles) through ``django.test.Client`` for each operation:

- ``hit``: a cached query hit (``GET query?types=<t>&min_freshness=0.5``, cache on);
- ``query``: an uncached typical query (three types by freshness, cache off);
- ``q1``..``q5``: the bench's five typical queries, uncached (``python -m bench``'s Q1-Q5:
  one type + ``min_freshness``, three types by freshness, source + urgency, free text on the
  subject, a worker's relevant knowledge with its token), each request a different type,
  source or search term as in the bench;
- ``broadcast``: one ``POST broadcast``;
- ``bulk``: one ``POST broadcast/bulk`` of 500 items; ``bulklean``: the same with ``lean``;
- ``inbox``: ``GET receive/<worker>`` (a 100-event page) with its ack.

Per operation it prints the median and P90 in-process time (ms), the CPU time this process
spent per request (``time.process_time``: what a request costs the web process, and the
figure least disturbed by other load on a shared machine), and writes pyinstrument's text
summary to ``--out``/profile-<op>.txt. Times are in-process (no HTTP, no daphne), so they
show where the CPU goes, and compare two checkouts run back to back on the same machine.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from pathlib import Path

from bench.private_db import private_database
from bench.runner import BUILTIN, clear_run_cache

OPS = ("hit", "query", "broadcast", "bulk", "bulklean", "inbox")
TYPICAL = ("q1", "q2", "q3", "q4", "q5")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=200, help="requests per operation (bulk: /20)")
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--out", default=".bench/profile")
    p.add_argument("--no-profile", action="store_true", help="only time, no pyinstrument")
    p.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_URL", "postgres://root@127.0.0.1:5432")
    )
    p.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")
    )
    args = p.parse_args(argv)

    with private_database(args.pg_url, "kx_prof") as url:
        os.environ.update(
            {
                "DATABASE_URL": url,
                "REDIS_URL": args.redis_url,
                "KE_INSTANCE": f"prof{os.getpid()}",
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "DJANGO_DEBUG": "false",
            }
        )
        try:
            import django

            django.setup()
            _run(args, url)
            return 0
        finally:
            clear_run_cache()


def _run(args, dsn: str) -> None:
    import psycopg2
    from django.core.management import call_command
    from django.test import Client, override_settings

    from bench.runner import typical_query
    from bench.seed import payload_for, seed_items
    from identity.actions import do_create_worker
    from knowledge.actions import do_subscribe
    from knowledge.registry import registry

    call_command("migrate", verbosity=0)
    workers, tokens = {}, {}
    for name in [*BUILTIN, "probe-1"]:
        workers[name], tokens[name] = do_create_worker(name)
    do_subscribe(workers["probe-1"], types=registry.names())
    raw = psycopg2.connect(dsn)
    seed_items(raw, args.rows, [w.pk for w in workers.values()])
    raw.close()

    def query_params(kind, i, j):
        return typical_query(kind, i, j, registry.names())

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ops = [o for o in args.ops.split(",") if o]
    client = Client(HTTP_HOST="127.0.0.1")
    auth = {"HTTP_AUTHORIZATION": f"Token {tokens['think']}"}
    import random

    rng = random.Random(5)
    counter = [0]

    def item(kind="risk_pattern"):
        counter[0] += 1
        return {
            "knowledge_type": kind,
            "payload": payload_for(kind, rng),
            "confidence": 0.8,
            "urgency": "normal",
            "idempotency_key": f"prof-{counter[0]}",
        }

    # think may broadcast risk_pattern and decision_outcome (its write scope)
    def broadcast():
        r = client.post("/api/knowledge/broadcast", item(), content_type="application/json", **auth)
        assert r.status_code in (200, 201), r.content[:300]

    def bulk(lean=False):
        body = {"items": [item(("risk_pattern", "decision_outcome")[i % 2]) for i in range(500)]}
        if lean:
            body["lean"] = True
        r = client.post(
            "/api/knowledge/broadcast/bulk", body, content_type="application/json", **auth
        )
        assert r.status_code == 200, r.content[:300]

    probe = {"HTTP_AUTHORIZATION": f"Token {tokens['probe-1']}"}

    def inbox():
        r = client.get("/api/knowledge/receive/probe-1?limit=100", **probe)
        assert r.status_code == 200, r.content[:300]
        ack = r.json()["ack"]
        r = client.post(
            "/api/knowledge/receive/probe-1/ack",
            {"seq": ack},
            content_type="application/json",
            **probe,
        )
        assert r.status_code == 200, r.content[:300]

    def query():
        r = client.get(
            "/api/knowledge/query?types=issue_pattern,learned_pattern,risk_pattern", **auth
        )
        assert r.status_code == 200, r.content[:300]

    def hit():
        r = client.get("/api/knowledge/query?types=risk_pattern&min_freshness=0.5", **auth)
        assert r.status_code == 200, r.content[:300]

    from django.conf import settings

    def with_cache(on: bool):
        return override_settings(
            KNOWLEDGE_EXCHANGE=settings.KNOWLEDGE_EXCHANGE.replace(cache_enabled=on)
        )

    typical_count = [0]

    def typical(kind):
        from urllib.parse import urlencode

        typical_count[0] += 1
        params, _, who = query_params(kind, typical_count[0] % 8, typical_count[0] // 8)
        token = {"HTTP_AUTHORIZATION": f"Token {tokens[who or 'think']}"}
        r = client.get("/api/knowledge/query?" + urlencode(params), **token)
        assert r.status_code == 200, r.content[:300]

    fns = {
        "hit": hit,
        "query": query,
        "broadcast": broadcast,
        "bulk": bulk,
        "bulklean": lambda: bulk(lean=True),
        "inbox": inbox,
        **{kind: functools.partial(typical, kind) for kind in TYPICAL},
    }
    if "inbox" in ops:
        # events for the inbox to read: 100 per page
        for _ in range(max(1, args.repeat // 10)):
            bulk()
    print(f"{'operation':<10} {'median ms':>10} {'p90 ms':>8} {'cpu ms':>8}  n")
    for op in ops:
        n = max(3, args.repeat // 20) if op.startswith("bulk") else args.repeat
        with with_cache(op == "hit"):
            for _ in range(1 if op.startswith("bulk") else 5):  # warm up (and fill the cache)
                fns[op]()
            times = []
            cpu_start = time.process_time()
            profiler = None
            if not args.no_profile:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0002)
                profiler.start()
            for _ in range(n):
                t = time.perf_counter()
                fns[op]()
                times.append((time.perf_counter() - t) * 1000)
            cpu_ms = (time.process_time() - cpu_start) * 1000 / n
            if profiler is not None:
                profiler.stop()
                text = profiler.output_text(unicode=False, color=False, show_all=False)
                (out / f"profile-{op}.txt").write_text(text)
        times.sort()
        p90 = times[int(0.9 * (len(times) - 1))]
        line = f"{op:<10} {statistics.median(times):>10.2f} {p90:>8.2f} {cpu_ms:>8.2f}  {n}"
        if op.startswith("bulk"):  # wall-clock rate over the whole series
            line += f"  ({500 * n / (sum(times) / 1000):,.0f} items/s)"
        print(line, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
