"""``python -m bench``: seed, serve, measure, print the table. See docs/performance.md.

1. Creates a dedicated PostgreSQL database ``kx_bench_<pid>`` (dropped at the end unless
   ``--keep-db``), migrates it, creates workers, COPYs ``--rows`` knowledge items.
2. Starts ``--servers`` daphne processes serving the real ASGI app (bench settings: the
   production settings plus the naive baseline's URLs and a header middleware reporting
   server time and DB queries per request).
3. Measures each operation with ``--clients`` concurrent keep-alive HTTP clients, the
   same queries as raw SQL through psycopg2 (the floor) and through the naive
   ``ModelViewSet`` (the baseline), then the query cache with the servers restarted with
   the cache on.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from bench.private_db import private_database

ROOT = Path(__file__).resolve().parent.parent
BUILTIN = ["think", "analysis", "learning", "dream", "recall"]
QUERY_NAMES = {
    "q1": "query: one type + min_freshness",
    "q2": "query: 3 types by freshness",
    "q3": "query: source + urgency",
    "q4": "query: free text on subject",
    "q5": "query: worker's relevant",
}


@dataclass
class Sample:
    client_ms: float
    server_ms: float
    queries: int
    status: int
    db_ms: float = float("nan")


@dataclass
class Result:
    op: str
    samples: list[Sample] = field(default_factory=list)
    wall_s: float = 0.0
    items: int = 0  # items (or events) moved, for throughput
    errors: int = 0
    first_error: str = ""
    note: str = ""

    def pct(self, attr: str, q: float) -> float:
        values = sorted(getattr(s, attr) for s in self.samples)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]

    def median(self, attr: str = "client_ms") -> float:
        values = [getattr(s, attr) for s in self.samples]
        return statistics.median(values) if values else float("nan")


# --- HTTP --------------------------------------------------------------------------------


class Http:
    """Keep-alive connections, one per thread, spread over the servers."""

    def __init__(self, ports: list[int]):
        self.ports = ports
        self.local = threading.local()
        self.counter = 0
        self.lock = threading.Lock()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            with self.lock:
                port = self.ports[self.counter % len(self.ports)]
                self.counter += 1
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        return conn

    def call(
        self, method: str, path: str, token: str | None = None, body=None
    ) -> tuple[Sample, bytes]:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Token {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            conn = self._conn()
            try:
                start = time.perf_counter()
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                elapsed = (time.perf_counter() - start) * 1000
                break
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
        sample = Sample(
            elapsed,
            float(resp.getheader("X-Server-Ms", "nan")),
            int(resp.getheader("X-DB-Queries", "-1")),
            resp.status,
            float(resp.getheader("X-DB-Ms", "nan")),
        )
        return sample, raw

    def reset(self) -> None:
        self.local = threading.local()
        self.counter = 0


def run_clients(clients: int, fn) -> tuple[list, float]:
    """Run ``fn(client_index)`` in ``clients`` threads at once; (their results, wall s)."""
    barrier = threading.Barrier(clients)

    def wrapped(i):
        barrier.wait()
        return fn(i)

    start = time.perf_counter()
    pool = ThreadPoolExecutor(clients)
    try:
        out = list(pool.map(wrapped, range(clients)))
    finally:
        # On Ctrl-C, do not wait for clients blocked on a slow server: main()'s cleanup
        # stops the servers, which unblocks them.
        pool.shutdown(wait=False, cancel_futures=True)
    return out, time.perf_counter() - start


def measure(
    op: str, clients: int, per_client: int, request_fn, http: Http, warmup: int = 1
) -> Result:
    """Each client sends ``per_client`` requests ``request_fn(client, j) -> (method, path, token, body)``."""
    result = Result(op)

    def client(i):
        out = []
        for j in range(-warmup, per_client):
            sample, raw = http.call(*request_fn(i, j))
            if j >= 0:
                out.append((sample, raw))
        return out

    per, result.wall_s = run_clients(clients, client)
    for samples in per:
        for sample, raw in samples:
            result.samples.append(sample)
            if sample.status >= 400:
                result.errors += 1
                result.first_error = result.first_error or raw[:300].decode(errors="replace")
    return result


# --- Orchestration -----------------------------------------------------------------------


def server_command(server: str, port: int, app: str = "config.asgi:application") -> list[str]:
    """The command line of one ASGI server process: daphne (the product's) or uvicorn
    (httptools + websockets, the comparison of docs/performance.md, "Server choice").
    Both write their access log to stdout, as daphne does in the Procfile."""
    if server == "uvicorn":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--http",
            "httptools",
            "--ws",
            "websockets",
            "--backlog",
            "2048",
            app,
        ]
    return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app]


class Servers:
    def __init__(self, ports: list[int], env: dict, log_dir: Path, server: str = "daphne"):
        self.ports, self.env, self.log_dir, self.server = ports, env, log_dir, server
        self.procs: list[subprocess.Popen] = []

    def start(self, cache_enabled: bool) -> None:
        env = {**self.env, "KE_CACHE_ENABLED": "true" if cache_enabled else "false"}
        for port in self.ports:
            log = open(self.log_dir / f"{self.server}-{port}.log", "ab")
            self.procs.append(
                subprocess.Popen(
                    server_command(self.server, port),
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.time() + 60
        for port in self.ports:
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.request("GET", "/api/knowledge/health")
                    conn.getresponse().read()
                    conn.close()
                    break
                except OSError:
                    if time.time() > deadline or any(p.poll() is not None for p in self.procs):
                        raise RuntimeError(
                            f"{self.server} on port {port} did not start; see {self.log_dir}"
                        ) from None
                    time.sleep(0.2)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs = []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument(
        "--rows",
        type=int,
        default=10_000,
        help="knowledge items to seed (1000000 for the real run)",
    )
    p.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    p.add_argument(
        "--servers", type=int, default=2, help="daphne processes (the clients are spread over them)"
    )
    p.add_argument("--requests", type=int, default=25, help="requests per client per operation")
    p.add_argument(
        "--serial-requests",
        type=int,
        default=30,
        help="requests of the one-client pass (service time without queueing)",
    )
    p.add_argument(
        "--naive-requests", type=int, default=3, help="requests per query for the naive baseline"
    )
    p.add_argument(
        "--naive-clients",
        type=int,
        default=1,
        help="concurrent clients for the naive baseline (it loads every matching row: "
        "at 1M items one request holds ~2 GB; its ratio is conservative)",
    )
    p.add_argument("--bulk-size", type=int, default=500, help="items per bulk broadcast request")
    p.add_argument("--bulk-batches", type=int, default=4, help="bulk requests per client")
    p.add_argument(
        "--events", type=int, default=10_000, help="missed events to catch up with events?since="
    )
    p.add_argument("--port", type=int, default=8300, help="first port of the server processes")
    p.add_argument(
        "--server",
        choices=["daphne", "uvicorn"],
        default="daphne",
        help="ASGI server of the processes (docs/performance.md, 'Server choice')",
    )
    p.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_URL", "postgres://root@127.0.0.1:5432")
    )
    p.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2"),
        help="Redis for the cache and channel layer; '' = local-memory cache",
    )
    p.add_argument(
        "--keep-db", action="store_true", help="do not drop the bench database at the end"
    )
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument(
        "--only-broadcast",
        action="store_true",
        help="seed, then measure only the single broadcast (at --clients and at 1 client)",
    )
    args = p.parse_args(argv)

    with private_database(args.pg_url, "kx_bench", keep=args.keep_db) as url:
        return _in_database(args, url)


def bench_environment(dsn: str, redis_url: str, instance: str, **extra: str) -> dict:
    """The environment of a bench run against the database ``dsn``: set in this process
    (before ``django.setup()``) and returned whole for the server processes it starts
    (``bench.settings``, no static files, no debug; its cache keys under ``instance``)."""
    run = {
        "DATABASE_URL": dsn,
        "REDIS_URL": redis_url,
        "KE_INSTANCE": instance,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "KE_SERVE_STATIC": "false",
        "DJANGO_DEBUG": "false",
        **extra,
    }
    os.environ.update(run)
    return {**os.environ}


def _in_database(args, url: str) -> int:
    """Seed, serve and measure against the private database at ``url``."""
    env = bench_environment(url, args.redis_url, f"bench{os.getpid()}")
    log_dir = ROOT / ".bench"
    log_dir.mkdir(exist_ok=True)
    servers = Servers([args.port + i for i in range(args.servers)], env, log_dir, args.server)
    try:
        import django

        django.setup()
        results, meta = _run(args, servers, env)
        _print(results, meta, args)
        if args.json:
            plain = {k: v for k, v in meta.items() if k not in ("ours", "ours_serial")}
            Path(args.json).write_text(
                json.dumps({"meta": plain, "results": _rows(results, meta)}, indent=2)
            )
        return 0
    finally:
        servers.stop()
        clear_run_cache()


def clear_run_cache() -> None:
    """Delete this run's keys from the cache (its own ``KE_INSTANCE`` prefix), if any."""
    try:
        from django.core.cache import cache

        if hasattr(cache, "delete_pattern"):
            cache.delete_pattern("*")  # only this run's prefix
    except Exception:
        pass


def _run(args, servers: Servers, env: dict):
    import psycopg2
    from django.core.management import call_command
    from django.db import connection
    from tqdm import tqdm

    from bench.seed import seed_items
    from identity.actions import do_create_worker
    from knowledge.actions import do_subscribe
    from knowledge.registry import registry

    meta: dict = {
        "rows": args.rows,
        "clients": args.clients,
        "servers": args.servers,
        "server": args.server,
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg()[0],
    }
    print(
        f"bench: {args.rows} items, {args.clients} clients, {args.servers} {args.server} processes, "
        f"database {env['DATABASE_URL'].rsplit('/', 1)[-1]}",
        flush=True,
    )
    call_command("migrate", verbosity=0)
    tokens: dict[str, str] = {}
    workers = {}
    for name in [*BUILTIN, "probe-1", "probe-2", "probe-3"]:
        workers[name], tokens[name] = do_create_worker(name)
    for name in ("probe-1", "probe-2", "probe-3"):
        do_subscribe(workers[name], types=registry.names())
    client_workers = list(tokens)[: args.clients] if args.clients <= len(tokens) else None
    if client_workers is None:
        for i in range(len(tokens), args.clients):
            name = f"probe-{i - 4}"
            workers[name], tokens[name] = do_create_worker(name)
        client_workers = list(tokens)[: args.clients]

    raw_conn = psycopg2.connect(env["DATABASE_URL"])
    with tqdm(total=args.rows, desc="seeding (COPY)", unit="items", unit_scale=True) as bar:
        meta["seed_s"] = seed_items(
            raw_conn, args.rows, [w.pk for w in workers.values()], progress=bar
        )
    raw_conn.close()
    meta["seed_rate"] = args.rows / meta["seed_s"] if meta["seed_s"] else 0
    print(
        f"seeded {args.rows} items in {meta['seed_s']:.1f} s ({meta['seed_rate']:,.0f} items/s)",
        flush=True,
    )
    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        meta["postgres"] = cur.fetchone()[0]
    connection.close()

    results: list[Result] = []
    http = Http(servers.ports)
    rng = random.Random(11)
    types = registry.names()
    c, n = args.clients, args.requests

    def query_params(kind: str, i: int, j: int) -> tuple[dict, dict, str | None]:
        return typical_query(kind, i, j, types)

    def ours(kind):
        def fn(i, j):
            params, _, who = query_params(kind, i, j)
            return "GET", "/api/knowledge/query?" + urlencode(params), tokens[who or "think"], None

        return fn

    def naive(kind):
        def fn(i, j):
            _, params, who = query_params(kind, i, j)
            return (
                "GET",
                "/bench/naive/items/?" + urlencode({**params, "status": "active"}),
                tokens[who or "think"],
                None,
            )

        return fn

    # --- Phase A: cache off ------------------------------------------------------------
    servers.start(cache_enabled=False)
    print("phase A: cache off", flush=True)
    if args.only_broadcast:
        results.extend(_single_broadcasts(args, http, tokens, client_workers))
        servers.stop()
        meta.update(raw={}, naive={}, cache={}, load_after=os.getloadavg()[0])
        return results, meta
    ours_by_kind: dict[str, Result] = {}
    for kind, label in QUERY_NAMES.items():
        ours_by_kind[kind] = r = measure(label, c, n, ours(kind), http)
        results.append(r)
        print(f"  {label}: median {r.median():.1f} ms", flush=True)

    serial_by_kind: dict[str, Result] = {}
    for kind, label in QUERY_NAMES.items():
        serial_by_kind[kind] = r = measure(
            label + " [1 client]", 1, args.serial_requests, ours(kind), http
        )
        results.append(r)

    raw_by_kind = {
        kind: _raw(kind, c, n, env["DATABASE_URL"], query_params, workers, registry)
        for kind in QUERY_NAMES
    }
    raw_serial_by_kind = {  # the floor for the [1 client] rows: one client, as many requests
        kind: _raw(
            kind, 1, args.serial_requests, env["DATABASE_URL"], query_params, workers, registry
        )
        for kind in QUERY_NAMES
    }
    naive_by_kind = {}
    for kind, label in QUERY_NAMES.items():
        naive_by_kind[kind] = r = measure(
            "naive " + label, args.naive_clients, args.naive_requests, naive(kind), http, warmup=0
        )
        print(f"  naive {label}: median {r.median():.1f} ms", flush=True)
    meta["raw"] = {
        k: {"median": v.median(), "p95": v.pct("client_ms", 0.95)} for k, v in raw_by_kind.items()
    }
    meta["raw_serial"] = {
        k: {"median": v.median(), "p95": v.pct("client_ms", 0.95)}
        for k, v in raw_serial_by_kind.items()
    }
    meta["naive"] = {
        k: {"median": v.median(), "p95": v.pct("client_ms", 0.95), "errors": v.errors}
        for k, v in naive_by_kind.items()
    }

    results.extend(_single_broadcasts(args, http, tokens, client_workers))

    def bulk(i, j):
        who = client_workers[i]
        items = []
        for m in range(args.bulk_size):
            t = types[m % len(types)]
            from bench.seed import payload_for

            payload = payload_for(t, rng)
            items.append(
                {
                    "knowledge_type": t,
                    "payload": payload,
                    "confidence": 0.6,
                    "urgency": "normal",
                    "idempotency_key": f"{who}-{j}-{m}",
                }
            )
        return "POST", "/api/knowledge/broadcast/bulk", tokens[who], {"items": items}

    bodies = {(i, j): bulk(i, j) for i in range(c) for j in range(-1, args.bulk_batches)}
    r = measure(
        f"broadcast (bulk of {args.bulk_size})",
        c,
        args.bulk_batches,
        lambda i, j: bodies[(i, j)],
        http,
    )
    r.items = len(r.samples) * args.bulk_size
    results.append(r)

    inbox_samples = {"receive": Result("inbox receive (limit 100)"), "ack": Result("inbox ack")}

    def inbox(i):
        who = client_workers[i]
        out = []
        for _ in range(n):
            s1, raw = http.call("GET", f"/api/knowledge/receive/{who}?limit=100", tokens[who])
            page = json.loads(raw)
            s2, _ = http.call(
                "POST", f"/api/knowledge/receive/{who}/ack", tokens[who], {"seq": page["ack"]}
            )
            out.append((s1, s2, len(page["results"])))
        return out

    per, wall = run_clients(c, inbox)
    delivered = 0
    for rows in per:
        for s1, s2, got in rows:
            inbox_samples["receive"].samples.append(s1)
            inbox_samples["ack"].samples.append(s2)
            delivered += got
    for res in inbox_samples.values():
        res.wall_s = wall
        res.errors = sum(1 for s in res.samples if s.status >= 400)
    inbox_samples["receive"].items = delivered
    results.extend(inbox_samples.values())

    results.append(_catch_up(http, tokens["probe-1"], args.events))
    servers.stop()
    http.reset()

    # --- Phase B: cache on ---------------------------------------------------------------
    servers.start(cache_enabled=True)
    print("phase B: cache on", flush=True)
    cache_rows = []
    for kind, label in QUERY_NAMES.items():
        first = measure("miss", 1, 1, lambda i, j, kind=kind: ours(kind)(0, 0), http, warmup=0)
        hits = measure(
            f"cached {label}", c, n, lambda i, j, kind=kind: ours(kind)(0, 0), http, warmup=0
        )
        cache_rows.append((kind, first, hits))
        results.append(hits)
    for kind, label in QUERY_NAMES.items():
        results.append(
            measure(
                f"cached {label} [1 client]",
                1,
                args.serial_requests,
                lambda i, j, kind=kind: ours(kind)(0, 0),
                http,
                warmup=0,
            )
        )
    _, raw = http.call("GET", "/api/knowledge/stats", tokens["think"])
    meta["cache_stats"] = json.loads(raw).get("cache")
    meta["cache"] = {
        kind: {
            "uncached_queries": statistics.median(s.queries for s in ours_by_kind[kind].samples),
            "miss_queries": first.samples[0].queries,
            "hit_queries": statistics.median(s.queries for s in hits.samples),
            "uncached_db_ms": ours_by_kind[kind].median("db_ms"),
            "hit_db_ms": hits.median("db_ms"),
            "hit_server_median": hits.median("server_ms"),
            "hit_server_p95": hits.pct("server_ms", 0.95),
        }
        for kind, first, hits in cache_rows
    }
    servers.stop()
    meta["load_after"] = os.getloadavg()[0]
    meta["ours"] = ours_by_kind
    meta["ours_serial"] = serial_by_kind
    return results, meta


def _single_broadcasts(args, http: Http, tokens: dict, client_workers: list[str]) -> list[Result]:
    """``POST broadcast`` of one new item (a subject of its own) by ``--clients`` clients,
    then by one client (the service time without queueing)."""

    def single(i, j):
        who = client_workers[i]
        body = {
            "knowledge_type": "issue_pattern",
            "confidence": 0.7,
            "payload": {
                "rule": "long_function",
                "location": f"bench/single/{who}/{j}",
                "severity": "high",
            },
        }
        return "POST", "/api/knowledge/broadcast", tokens[who], body

    r = measure("broadcast (single)", args.clients, args.requests, single, http)
    r.items = len(r.samples)
    serial = measure(
        "broadcast (single) [1 client]",
        1,
        args.serial_requests,
        lambda i, j: single(i, 10_000 + j),
        http,
    )
    return [r, serial]


def typical_query(kind: str, i: int, j: int, types: list[str]) -> tuple[dict, dict, str | None]:
    """Request ``j`` of client ``i`` for the typical query ``kind`` (q1..q5): our query
    string, the naive baseline's, and the worker whose token asks (None: think)."""
    from knowledge.registry import registry

    k = i * 1000 + j
    if kind == "q1":
        t = types[k % len(types)]
        return (
            {"types": t, "min_freshness": 0.5},
            {"knowledge_type": t, "min_freshness": 0.5},
            None,
        )
    if kind == "q2":
        ts = ",".join(sorted({types[k % 10], types[(k + 3) % 10], types[(k + 6) % 10]}))
        return {"types": ts}, {"knowledge_type": ts, "ordering": "-freshness"}, None
    if kind == "q3":
        s = BUILTIN[k % 5]
        return (
            {"sources": s, "urgency": "high"},
            {"source": s, "urgency": 3, "ordering": "-freshness"},
            None,
        )
    if kind == "q4":
        term = f"mod{(k * 37) % 5000:04d}"
        return {"q": term}, {"q": term, "ordering": "-freshness"}, None
    name = BUILTIN[i % 5]
    ts = ",".join(sorted(registry.interests_of(name)))
    return (
        {"types": ts, "min_freshness": 0.3},
        {"knowledge_type": ts, "min_freshness": 0.3},
        name,
    )


def _raw(kind, clients, per_client, dsn, query_params, workers, registry) -> Result:
    """The same query as hand-written SQL through psycopg2: the floor."""
    import psycopg2

    result = Result("raw " + kind)

    def client(i):
        conn = psycopg2.connect(dsn)
        out = []
        try:
            with conn.cursor() as cur:
                for j in range(-1, per_client):
                    params, _, who = query_params(kind, i, j)
                    sql, sql_args = _raw_sql(kind, params, workers, who, registry)
                    start = time.perf_counter()
                    cur.execute(sql, sql_args)
                    cur.fetchall()
                    if j >= 0:
                        out.append(
                            Sample((time.perf_counter() - start) * 1000, float("nan"), 1, 200)
                        )
            conn.rollback()
        finally:
            conn.close()
        return out

    per, result.wall_s = run_clients(clients, client)
    for samples in per:
        result.samples.extend(samples)
    return result


ITEM = "knowledge_knowledgeitem"
JOIN = "JOIN workers_worker w ON w.id = i.source_id"


def _raw_sql(kind: str, params: dict, workers: dict, who: str | None, registry) -> tuple[str, list]:
    as_of = time.time()
    try:
        from knowledge.search import VOCABULARY_SQL, longest_run, prefix_query, words_sql
    except ImportError:  # a product before the subject's words (b19e867): its LIKE statement
        if kind == "q4":
            case = " ".join(
                f"WHEN '{t}' THEN {1 / registry.decay_of(t)!r}" for t in registry.names()
            )
            return (
                f"SELECT i.*, w.name FROM {ITEM} i {JOIN} WHERE UPPER(i.subject::text) LIKE UPPER(%s) "
                f"AND i.status = 'active' ORDER BY (i.observed_ts - %s) * (CASE i.knowledge_type {case} END) DESC, "
                "i.id DESC LIMIT 51",
                [f"%{params['q']}%", as_of],
            )
    if kind == "q1":
        t = params["types"]
        return (
            f"SELECT i.*, w.name FROM {ITEM} i {JOIN} WHERE i.knowledge_type = %s AND i.status = 'active' "
            "AND i.observed_ts >= %s ORDER BY i.observed_ts DESC, i.id DESC LIMIT 51",
            [t, as_of - registry[t].max_age_for(params["min_freshness"])],
        )
    if kind == "q4":
        case = " ".join(f"WHEN '{t}' THEN {1 / registry.decay_of(t)!r}" for t in registry.names())
        # The product's search (knowledge/search.py): the subject's words, then the exact test.
        return (
            f"SELECT i.*, w.name FROM {ITEM} i {JOIN} WHERE {words_sql('i')} && {VOCABULARY_SQL} "
            "AND STRPOS(UPPER(i.subject::text), UPPER(%s)) > 0 "
            f"AND i.status = 'active' ORDER BY (i.observed_ts - %s) * (CASE i.knowledge_type {case} END) DESC, "
            "i.id DESC LIMIT 51",
            [prefix_query(longest_run(params["q"])), params["q"], as_of],
        )
    extra, extra_args, fresh = "", [], params.get("min_freshness")
    types = params.get("types", "").split(",") if params.get("types") else registry.names()
    if kind == "q3":
        extra = " AND source_id = %s AND urgency = 3"
        extra_args = [workers[params["sources"]].pk]
    if kind == "q5":
        me = workers[who].pk
        extra = (
            " AND (NOT is_targeted OR source_id = %s OR id IN "
            "(SELECT item_id FROM knowledge_knowledgetarget WHERE worker_id = %s))"
        )
        extra_args = [me, me]
    parts, args = [], []
    for t in types:
        cond = "knowledge_type = %s AND status = 'active'" + extra
        part_args = [as_of, 1 / registry.decay_of(t), t, *extra_args]
        if fresh:
            cond += " AND observed_ts >= %s"
            part_args.append(as_of - registry[t].max_age_for(fresh))
        parts.append(
            f"(SELECT id, (observed_ts - %s) * %s AS k FROM {ITEM} WHERE {cond} "
            "ORDER BY observed_ts DESC, id DESC LIMIT 51)"
        )
        args += part_args
    return (
        f"SELECT i.*, w.name, t.k FROM ({' UNION ALL '.join(parts)}) t JOIN {ITEM} i ON i.id = t.id "
        f"{JOIN} ORDER BY t.k DESC, i.id DESC LIMIT 51",
        args,
    )


def _catch_up(http: Http, token: str, want: int) -> Result:
    """One consumer that missed ``want`` events reads them back with events?since= (pages
    of 1000); repeated three times, each a Sample of the total time."""
    result = Result(f"events?since= catch-up of {want}")
    _, raw = http.call("GET", "/api/knowledge/events?limit=1", token)
    top = json.loads(raw)["top"]
    want = min(want, top)
    for _ in range(3):
        since, got, total_server, queries = top - want, 0, 0.0, 0
        start = time.perf_counter()
        while got < want:
            sample, raw = http.call("GET", f"/api/knowledge/events?since={since}&limit=1000", token)
            page = json.loads(raw)
            if sample.status >= 400:
                result.errors += 1
                result.first_error = raw[:300].decode(errors="replace")
                break
            got += len(page["results"])
            total_server += sample.server_ms
            queries += sample.queries
            if page["next"] == since:
                break
            since = page["next"]
        result.samples.append(
            Sample((time.perf_counter() - start) * 1000, total_server, queries, 200)
        )
        result.items = got
    result.note = f"{result.items} events per catch-up"
    return result


# --- Output ------------------------------------------------------------------------------


def _rows(results: list[Result], meta: dict) -> list[dict]:
    rows = []
    ours = meta.get("ours", {})
    by_label = {r.op: k for k, r in ours.items()}
    serial_by_label = {r.op: k for k, r in meta.get("ours_serial", {}).items()}
    for r in results:
        row = {
            "op": r.op,
            "n": len(r.samples),
            "median_ms": r.median(),
            "p95_ms": r.pct("client_ms", 0.95),
            "p99_ms": r.pct("client_ms", 0.99),
            "server_median_ms": r.median("server_ms"),
            "server_p95_ms": r.pct("server_ms", 0.95),
            "db_queries": statistics.median(s.queries for s in r.samples) if r.samples else None,
            "per_s": (r.items or len(r.samples)) / r.wall_s if r.wall_s else None,
            "errors": r.errors,
        }
        kind = by_label.get(r.op)
        if kind:  # like for like: raw SQL ran with the same number of clients
            row["raw_median_ms"] = meta["raw"][kind]["median"]
            row["ours_over_raw"] = row["median_ms"] / row["raw_median_ms"]
        kind = serial_by_label.get(r.op)
        if kind and kind in meta.get("raw_serial", {}):  # raw SQL with one client too
            row["raw_median_ms"] = meta["raw_serial"][kind]["median"]
            row["ours_over_raw"] = row["median_ms"] / row["raw_median_ms"]
        if kind:  # like for like: the naive baseline ran with --naive-clients (default 1)
            row["naive_median_ms"] = meta["naive"][kind]["median"]
            row["naive_over_ours"] = row["naive_median_ms"] / row["median_ms"]
        if r.first_error:
            row["first_error"] = r.first_error
        rows.append(row)
    return rows


def _print(results: list[Result], meta: dict, args) -> None:
    rows = _rows(results, meta)
    head = (
        f"{'operation':<40} {'n':>5} {'median':>8} {'p95':>8} {'p99':>8} {'srv med':>8} {'srv p95':>8} "
        f"{'queries':>7} {'per s':>9} {'raw ms':>7} {'our/raw':>7} {'naive ms':>9} {'naive/our':>9}"
    )
    print()
    print(
        f"Knowledge Exchange bench: {meta['rows']:,} items, PostgreSQL {meta.get('postgres', '?')}, "
        f"{meta['clients']} clients, {meta['servers']} {meta.get('server', 'daphne')} processes, {meta['cpus']} CPUs, "
        f"load avg {meta['load_before']:.1f} -> {meta.get('load_after', float('nan')):.1f} (shared machine)"
    )
    print(f"seeding: {meta['seed_s']:.1f} s ({meta['seed_rate']:,.0f} items/s, COPY)")
    print(
        "times in ms, measured by the client unless 'srv' (time inside Django, X-Server-Ms); 'queries' = DB "
        "queries per request (median); our/raw on the query rows (raw SQL with as many clients), "
        f"naive/our on the [1 client] rows (naive baseline with {args.naive_clients} client(s)); "
        "catch-up: one sample = the whole catch-up"
    )
    print(head)
    print("-" * len(head))

    def f(v, spec=".1f"):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    for row in rows:
        print(
            f"{row['op'][:40]:<40} {row['n']:>5} {f(row['median_ms']):>8} {f(row['p95_ms']):>8} {f(row['p99_ms']):>8} "
            f"{f(row['server_median_ms']):>8} {f(row['server_p95_ms']):>8} {f(row['db_queries'], '.0f'):>7} "
            f"{f(row['per_s'], ',.0f'):>9} {f(row.get('raw_median_ms'), '.2f'):>7} {f(row.get('ours_over_raw')):>7} "
            f"{f(row.get('naive_median_ms'), ',.0f'):>9} {f(row.get('naive_over_ours')):>9}"
            + (
                f"  ERRORS {row['errors']}: {row.get('first_error', '')[:120]}"
                if row["errors"]
                else ""
            )
        )
    print()
    print("query cache (servers restarted with the cache on; the same query repeated):")
    print(
        f"{'query':<40} {'uncached q/req':>14} {'miss q/req':>10} {'hit q/req':>9} {'fewer':>6} "
        f"{'DB ms uncached':>14} {'DB ms hit':>9} {'hit srv med':>11} {'hit srv p95':>11}"
    )
    for kind, c in meta["cache"].items():
        fewer = (
            1 - c["hit_queries"] / c["uncached_queries"] if c["uncached_queries"] else float("nan")
        )
        print(
            f"{QUERY_NAMES[kind]:<40} {c['uncached_queries']:>14.0f} {c['miss_queries']:>10} {c['hit_queries']:>9.0f} "
            f"{fewer:>6.0%} {c['uncached_db_ms']:>14.2f} {c['hit_db_ms']:>9.2f} {c['hit_server_median']:>11.2f} "
            f"{c['hit_server_p95']:>11.2f}"
        )
    print("(authentication caches token -> worker for 10 s, so a hit makes no DB query)")
    stats = meta.get("cache_stats") or {}
    print(
        f"cache stats (GET stats, shared across processes): hits={stats.get('hits')} misses={stats.get('misses')} "
        f"hit_rate={stats.get('hit_rate')} backend={stats.get('backend')}"
    )
    for key, label in (("naive", "naive"),):
        errs = {k: v["errors"] for k, v in meta[key].items() if v["errors"]}
        if errs:
            print(f"{label} errors: {errs}")
