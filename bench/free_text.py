"""``python -m bench.free_text --rows N``: free text (``q``) through the words or the trigram index.

Creates its own PostgreSQL database ``kx_text_<pid>`` (dropped at the end), seeds ``--rows``
items as ``make bench`` does (COPY, vocabulary filled, ``VACUUM ANALYZE``), then for
``--terms`` search terms ``modNNNN`` (the bench's Q4) runs the product's query
(``knowledge.query.run_query``, as a worker) with the words forced
(``search_words_min_rows=0``) and with the trigram index forced, alternating the order each
round. Per way it prints the median wall time of the whole query and the median **CPU time
of the PostgreSQL backend** per query (from ``/proc/<pid>/stat``: the figure the machine's
load barely moves), and checks that both find the same items. What ``search_words_min_rows``
(config/product.py) is set from (docs/performance.md, "Free text: words or trigrams" and
"Free text at 1M (2026-12-02)").
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from bench.private_db import private_database
from bench.proc import cpu_seconds
from bench.runner import BUILTIN


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.free_text", description=__doc__.split("\n")[0]
    )
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--terms", type=int, default=40)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_URL", "postgres://root@127.0.0.1:5432")
    )
    args = p.parse_args(argv)
    with private_database(args.pg_url, "kx_text") as url:
        os.environ.update(
            {
                "DATABASE_URL": url,
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "KE_CACHE_ENABLED": "false",
                "DB_POOL": "false",
            }
        )
        os.environ.pop("REDIS_URL", None)
        import django

        django.setup()
        _run(args, url)
    return 0


def _run(args, dsn: str) -> None:
    import psycopg2
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import override_settings

    from bench.seed import seed_items
    from config.product import product_settings
    from identity.actions import do_create_worker
    from knowledge.query import KnowledgeQuery, run_query

    call_command("migrate", verbosity=0)
    workers = {name: do_create_worker(name)[0] for name in BUILTIN}
    raw = psycopg2.connect(dsn)
    seed_items(raw, args.rows, [w.pk for w in workers.values()])
    raw.close()
    viewer = workers["think"]
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid(), count(*) FROM knowledge_subjectword")
        pid, words = cur.fetchone()
    ways = {
        "words": product_settings().replace(search_words_min_rows=0),
        "trigram": product_settings().replace(search_words_min_rows=10**12),
    }
    terms = [f"mod{(i * 97) % 5000:04d}" for i in range(args.terms)]
    wall = {w: [] for w in ways}
    cpu = {w: [] for w in ways}
    for term in terms[:3]:  # warm both ways (plans, caches)
        for settings_obj in ways.values():
            with override_settings(KNOWLEDGE_EXCHANGE=settings_obj):
                run_query(KnowledgeQuery(q=term), viewer)
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        order = list(ways) if r % 2 == 0 else list(reversed(ways))
        for term in terms:
            found = {}
            for way in order:
                with override_settings(KNOWLEDGE_EXCHANGE=ways[way]):
                    c0, t0 = cpu_seconds(pid), time.perf_counter()
                    result = run_query(KnowledgeQuery(q=term), viewer)
                    wall[way].append((time.perf_counter() - t0) * 1000)
                    cpu[way].append((cpu_seconds(pid) - c0) * 1000)
                found[way] = [item["id"] for item in result["results"]]
            assert found["words"] == found["trigram"], (term, found)
    load.append(os.getloadavg()[0])
    print(
        f"rows {args.rows}, vocabulary {words} words; {args.rounds} rounds x {args.terms} terms; "
        f"load {load[0]:.1f} -> {load[1]:.1f}"
    )
    print(f"{'way':<8} {'wall med ms':>11} {'backend cpu mean ms':>20}")
    for way in ways:
        # CPU is read in clock ticks (10 ms): the mean over many queries, not the median.
        print(f"{way:<8} {statistics.median(wall[way]):>11.3f} {statistics.mean(cpu[way]):>20.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
