"""Fill the query cache with the common queries (after a deploy or a cache restart)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from knowledge import cache as knowledge_cache
from knowledge.query import common_queries, run_query_cached


class Command(BaseCommand):
    help = "Run the common knowledge queries once so that they are served from the cache."

    def handle(self, *args, **options):
        if not knowledge_cache.enabled():
            self.stdout.write("cache is disabled (KE_CACHE_ENABLED=false): nothing to warm")
            return
        started = time.perf_counter()
        warmed = already = 0
        for query, viewer in common_queries():
            _, hit = run_query_cached(query, viewer)
            if hit:
                already += 1
            else:
                warmed += 1
        elapsed = time.perf_counter() - started
        self.stdout.write(
            f"warmed {warmed} queries ({already} were already cached) in {elapsed:.2f} s; "
            f"TTL {knowledge_cache.ttl()} s"
        )
