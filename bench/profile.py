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
- ``broadcast``: one ``POST broadcast`` (with an idempotency key, as the SDK sends it);
  ``single``: one ``POST broadcast`` as ``make bench``'s single-broadcast row sends it (an
  ``issue_pattern`` on a new subject, no key);
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
import contextlib
import functools
import os
import statistics
import time
from pathlib import Path

from bench.private_db import private_database
from bench.proc import cpu_seconds
from bench.runner import BUILTIN, clear_run_cache

OPS = ("hit", "query", "broadcast", "single", "bulk", "bulklean", "inbox")
TYPICAL = ("q1", "q2", "q3", "q4", "q5")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=200, help="requests per operation (bulk: /20)")
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--out", default=".bench/profile")
    p.add_argument("--no-profile", action="store_true", help="only time, no pyinstrument")
    p.add_argument(
        "--dsn",
        help="run in this existing database (one a --keep-db run left) instead of a new one; "
        "it is seeded only up to --rows, so A/B runs of two checkouts share one seeded table",
    )
    p.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    p.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_URL", "postgres://root@127.0.0.1:5432")
    )
    p.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")
    )
    args = p.parse_args(argv)

    with _database(args) as url:
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


def _database(args):
    if args.dsn:
        return contextlib.nullcontext(args.dsn)
    return private_database(args.pg_url, "kx_prof", keep=args.keep_db)


def _workers(names):
    """The bench's workers with fresh tokens (created, or found in a reused database)."""
    from identity.actions import do_create_worker, do_rotate_token
    from identity.models import Worker

    workers, tokens = {}, {}
    for name in names:
        worker = Worker.objects.filter(name=name).first()
        if worker is None:
            workers[name], tokens[name] = do_create_worker(name)
        else:
            workers[name], tokens[name] = worker, do_rotate_token(worker)
    return workers, tokens


def _backend_cpu() -> float:
    """CPU seconds used so far by the database backends connected to this database
    (PostgreSQL on this machine, read from /proc/<pid>/stat; 0 where it cannot be read)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return 0.0
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend'"
        )
        pids = [row[0] for row in cur.fetchall()]
    return sum(cpu_seconds(pid) for pid in pids)


def _run(args, dsn: str) -> None:
    import psycopg2
    from django.core.management import call_command
    from django.test import Client, override_settings

    from bench.runner import typical_query
    from bench.seed import payload_for, seed_items
    from knowledge.actions import do_subscribe
    from knowledge.models import KnowledgeItem
    from knowledge.registry import registry

    call_command("migrate", verbosity=0)
    workers, tokens = _workers([*BUILTIN, "probe-1"])
    do_subscribe(workers["probe-1"], types=registry.names())
    if not KnowledgeItem.objects.exists():
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

    rng = random.Random(os.getpid())  # new subjects and keys in a reused database too
    counter = [0]
    run_id = f"{os.getpid()}-{time.time():.0f}"

    def item(kind="risk_pattern"):
        counter[0] += 1
        return {
            "knowledge_type": kind,
            "payload": payload_for(kind, rng),
            "confidence": 0.8,
            "urgency": "normal",
            "idempotency_key": f"prof-{run_id}-{counter[0]}",
        }

    # think may broadcast risk_pattern and decision_outcome (its write scope)
    def broadcast():
        r = client.post("/api/knowledge/broadcast", item(), content_type="application/json", **auth)
        assert r.status_code in (200, 201), r.content[:300]

    as_analysis = {"HTTP_AUTHORIZATION": f"Token {tokens['analysis']}"}  # its write scope

    def single():
        counter[0] += 1
        body = {  # bench/runner.py _single_broadcasts
            "knowledge_type": "issue_pattern",
            "confidence": 0.7,
            "payload": {
                "rule": "long_function",
                "location": f"bench/single/{run_id}/{counter[0]}",
                "severity": "high",
            },
        }
        r = client.post(
            "/api/knowledge/broadcast", body, content_type="application/json", **as_analysis
        )
        assert r.status_code == 201, r.content[:300]

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
        "single": single,
        "bulk": bulk,
        "bulklean": lambda: bulk(lean=True),
        "inbox": inbox,
        **{kind: functools.partial(typical, kind) for kind in TYPICAL},
    }
    if "inbox" in ops:
        # events for the inbox to read: 100 per page
        for _ in range(max(1, args.repeat // 10)):
            bulk()
    print(f"{'operation':<10} {'median ms':>10} {'p90 ms':>8} {'cpu ms':>8} {'db cpu ms':>9}  n")
    for op in ops:
        n = max(3, args.repeat // 20) if op.startswith("bulk") else args.repeat
        with with_cache(op == "hit"):
            for _ in range(1 if op.startswith("bulk") else 5):  # warm up (and fill the cache)
                fns[op]()
            times = []
            cpu_start, db_start = time.process_time(), _backend_cpu()
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
            db_ms = (_backend_cpu() - db_start) * 1000 / n
            if profiler is not None:
                profiler.stop()
                text = profiler.output_text(unicode=False, color=False, show_all=False)
                (out / f"profile-{op}.txt").write_text(text)
        times.sort()
        p90 = times[int(0.9 * (len(times) - 1))]
        line = f"{op:<10} {statistics.median(times):>10.2f} {p90:>8.2f} {cpu_ms:>8.2f} {db_ms:>9.1f}  {n}"
        if op.startswith("bulk"):  # wall-clock rate over the whole series
            line += f"  ({500 * n / (sum(times) / 1000):,.0f} items/s)"
        print(line, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
