"""``python -m bench.pages --dsn <database>``: what the pages that count the whole fleet cost
on a large database (docs/performance.md, "Statistics without a scan per request" and "The
admin's item list at 1M").

In process, against an existing database (one ``python -m bench.profile --rows 1000000
--keep-db`` left): ``GET stats`` for a worker and for a person (``collect_stats``), then the
admin's item and event lists as a superuser (``django.test.Client``). Each is run once to warm
up, then ``--repeat`` times; it prints the median wall time, the PostgreSQL backend's CPU per
call (``/proc``, 10 ms ticks) and the statements of the last call, the slowest first. Run it
from two checkouts in turn to compare them. The worker is the bench's ``think``; a superuser
``bench-pages`` is created if missing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import django


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pages", description=__doc__.split("\n")[0])
    p.add_argument("--dsn", required=True, help="postgres://... of a seeded bench database")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--worker", default="think")
    p.add_argument(
        "--admin",
        nargs="*",
        default=[
            "/admin/knowledge/knowledgeitem/",
            "/admin/knowledge/knowledgeitem/?knowledge_type=risk_pattern",
            "/admin/knowledge/knowledgeitem/?q=mod0042",
            "/admin/knowledge/event/",
            "/dashboard/",
        ],
    )
    args = p.parse_args(argv)
    os.environ["DATABASE_URL"] = args.dsn
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    # After setup: the settings read DATABASE_URL (--dsn) when loaded, and models need apps.
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.proc import cpu_seconds
    from identity.models import Worker
    from knowledge.stats import collect_stats

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]

    def measure(label: str, call) -> None:
        call()  # warm up (and, where it is kept, count what is shared)
        walls, cpus = [], []
        for _ in range(args.repeat):
            before, start = cpu_seconds(backend), time.perf_counter()
            with CaptureQueriesContext(connection) as ctx:
                call()
            walls.append((time.perf_counter() - start) * 1000)
            cpus.append((cpu_seconds(backend) - before) * 1000)
        slowest = sorted(ctx.captured_queries, key=lambda q: -float(q["time"]))[:2]
        print(
            f"{label:<60} median {statistics.median(walls):8.1f} ms, database CPU "
            f"{statistics.median(cpus):6.1f} ms, {len(ctx.captured_queries)} statements"
        )
        for q in slowest:
            print(f"    {float(q['time']) * 1000:7.1f} ms  {' '.join(q['sql'].split())[:110]}")

    cache.clear()
    worker = Worker.objects.get(name=args.worker)
    measure(f"GET stats as the worker {args.worker!r}", lambda: collect_stats(worker))
    measure("GET stats as a person", lambda: collect_stats(None))
    user_model = get_user_model()
    user = user_model.objects.filter(username="bench-pages").first()
    if user is None:
        user = user_model.objects.create_superuser("bench-pages", "", "bench-pages-pw-1")
    client = Client()
    client.force_login(user)
    for path in args.admin:

        def get(path=path):
            assert client.get(path).status_code == 200, path

        measure(path, get)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
