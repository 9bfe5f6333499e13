"""``python -m bench.hit``: what one cached query hit costs: counted, instruction-counted, timed.

Creates its own PostgreSQL database ``kx_hit_<pid>`` (dropped at the end), seeds ``--rows``
items by COPY and creates the bench's workers, then, for the five typical queries of
``make bench`` (each first answered once, so the rest are hits):

- default: in-process through ``django.test.Client`` (every middleware, DRF, authentication,
  throttles, Redis), per hit: Redis round trips and commands (``bench/redis_trips.py``), DB
  queries, CPU ms of the process and wall ms. Round trips and queries do not depend on the
  machine's load; CPU barely does.
- ``--callgrind``: the same hits in a child process under ``valgrind --tool=callgrind``
  (instrumented only around the hits): instructions per hit, the load-independent figure.
- ``--against DIR``: through HTTP, as ``make bench``'s "cached ... [1 client]" rows: one daphne
  process with ``bench.settings`` from this checkout and one from the checkout ``DIR`` (same
  database, caches under their own prefixes), one client, the two servers alternated query
  by query for ``--rounds`` rounds; the server median is ``X-Server-Ms`` (the bench's figure),
  the client median includes HTTP and daphne. The answers of the two are compared (status,
  headers, body without the time-dependent ``freshness`` and ``as_of``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.private_db import private_database
from bench.runner import BUILTIN, ROOT, clear_run_cache

QUERIES = ("q1", "q2", "q3", "q4", "q5")


def query_paths() -> dict[str, tuple[str, str]]:
    """Query kind -> (path, worker whose token asks): one instance of each bench query."""
    from knowledge.registry import registry

    interests = ",".join(sorted(registry.interests_of("learning")))
    return {
        "q1": ("/api/knowledge/query?types=risk_pattern&min_freshness=0.5", "think"),
        "q2": ("/api/knowledge/query?types=issue_pattern,learned_pattern,risk_pattern", "think"),
        "q3": ("/api/knowledge/query?sources=think&urgency=high", "think"),
        "q4": ("/api/knowledge/query?q=mod0037", "think"),
        "q5": (f"/api/knowledge/query?types={interests}&min_freshness=0.3", "learning"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hit", description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=300, help="hits per query (in-process)")
    p.add_argument("--callgrind", action="store_true", help="instructions per hit (valgrind)")
    p.add_argument("--against", help="another checkout to compare with through daphne")
    p.add_argument("--rounds", type=int, default=6, help="--against: alternations")
    p.add_argument("--serial", type=int, default=30, help="--against: hits per query and round")
    p.add_argument("--port", type=int, default=8760)
    p.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_URL", "postgres://root@127.0.0.1:5432")
    )
    p.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _callgrind_child(args)

    with private_database(args.pg_url, "kx_hit") as url:
        env = {
            "DATABASE_URL": url,
            "REDIS_URL": args.redis_url,
            "KE_INSTANCE": f"hit{os.getpid()}",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_DEBUG": "false",
            "KE_CACHE_ENABLED": "true",
        }
        os.environ.update(env)
        try:
            import django

            django.setup()
            tokens = _prepare(args.rows, url)
            if args.against:
                _through_daphne(args, env, tokens)
            elif args.callgrind:
                _run_callgrind(args, env, tokens)
            else:
                _in_process(args.repeat, tokens)
            return 0
        finally:
            clear_run_cache()


def _prepare(rows: int, dsn: str) -> dict[str, str]:
    import psycopg2
    from django.core.management import call_command

    from bench.seed import seed_items
    from identity.actions import do_create_worker

    call_command("migrate", verbosity=0)
    workers, tokens = {}, {}
    for name in BUILTIN:
        workers[name], tokens[name] = do_create_worker(name)
    raw = psycopg2.connect(dsn)
    seed_items(raw, rows, [w.pk for w in workers.values()])
    raw.close()
    from django.db import connection

    connection.close()
    return tokens


def _hit_fn(client, tokens: dict[str, str], kind: str):
    path, who = query_paths()[kind]
    auth = {"HTTP_AUTHORIZATION": f"Token {tokens[who]}"}

    def hit():
        r = client.get(path, **auth)
        assert r.status_code == 200, r.content[:300]
        return r

    return hit


def _in_process(repeat: int, tokens: dict[str, str]) -> None:
    from django.db import connection
    from django.test import Client

    from bench.redis_trips import count_redis_trips

    client = Client(HTTP_HOST="127.0.0.1")
    print(f"load {os.getloadavg()[0]:.1f}; {repeat} hits per query, in-process")
    print(f"{'query':<6} {'trips':>6} {'cmds':>6} {'DB q':>6} {'cpu ms':>8} {'wall med':>9}")
    for kind in QUERIES:
        hit = _hit_fn(client, tokens, kind)
        for _ in range(3):  # the miss, then hits
            hit()
        assert hit().json()["cached"] is True
        queries = [0]

        def count(execute, *a, queries=queries):
            queries[0] += 1
            return execute(*a)

        times = []
        with count_redis_trips() as trips, connection.execute_wrapper(count):
            cpu = time.process_time()
            for _ in range(repeat):
                t = time.perf_counter()
                hit()
                times.append((time.perf_counter() - t) * 1000)
            cpu_ms = (time.process_time() - cpu) * 1000 / repeat
        print(
            f"{kind:<6} {trips.round_trips / repeat:>6.2f} {trips.commands / repeat:>6.2f} "
            f"{queries[0] / repeat:>6.2f} {cpu_ms:>8.3f} {statistics.median(times):>9.3f}",
            flush=True,
        )


# --- Instructions per hit (callgrind) ----------------------------------------------------


def _run_callgrind(args, env: dict, tokens: dict[str, str]) -> None:
    out = Path(ROOT / ".bench")
    out.mkdir(exist_ok=True)
    prefix = out / f"callgrind.hit.{os.getpid()}"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={prefix}.%p",
        sys.executable,
        "-m",
        "bench.hit",
        "--child",
        "--repeat",
        str(args.repeat),
    ]
    child_env = {
        **os.environ,
        **env,
        "KX_HIT_TOKENS": json.dumps(tokens),
        # valgrind runs the child ~50x slower: no pool or connect timeouts
        "DB_POOL_TIMEOUT": "120",
        "DB_CONNECT_TIMEOUT": "120",
    }
    subprocess.run(cmd, cwd=ROOT, env=child_env, check=True)


def _callgrind_child(args) -> int:
    import django

    django.setup()
    from django.test import Client

    tokens = json.loads(os.environ["KX_HIT_TOKENS"])
    client = Client(HTTP_HOST="127.0.0.1")
    pid = os.getpid()
    print(f"instructions per hit (callgrind), {args.repeat} hits per query")
    for kind in QUERIES:
        hit = _hit_fn(client, tokens, kind)
        for _ in range(5):
            hit()
        _callgrind_control("-z", pid)
        _callgrind_control("-i", "on", pid)
        for _ in range(args.repeat):
            hit()
        _callgrind_control("-i", "off", pid)
        _callgrind_control("-d", kind, pid)
        print(f"{kind:<6} {_last_dump_total(pid) / args.repeat / 1e6:>8.2f} M", flush=True)
    return 0


def _callgrind_control(*argv) -> None:
    subprocess.run(["callgrind_control", *map(str, argv)], check=True, capture_output=True)


def _last_dump_total(pid: int) -> int:
    dumps = sorted(
        Path(ROOT / ".bench").glob(f"callgrind.hit.*.{pid}.*"), key=lambda p: p.stat().st_mtime
    )
    for line in dumps[-1].read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dumps[-1]}")


# --- Through daphne, two checkouts alternated ---------------------------------------------


def _through_daphne(args, env: dict, tokens: dict[str, str], measure=None) -> None:
    """One daphne per checkout (this and ``args.against``), then ``measure(args, conns,
    tokens)`` (default: the cached hits compared)."""
    import http.client

    from bench.runner import server_command

    checkouts = {"this": ROOT, "other": Path(args.against).resolve()}
    procs, conns = {}, {}
    try:
        for i, (name, root) in enumerate(checkouts.items()):
            port = args.port + i
            server_env = {
                **os.environ,
                **env,
                "DJANGO_SETTINGS_MODULE": "bench.settings",
                "KE_SERVE_STATIC": "false",
                "KE_INSTANCE": f"{env['KE_INSTANCE']}{name}",
            }
            command = server_command("daphne", port)
            command[0] = str(root / ".venv" / "bin" / "python")
            log = open(ROOT / ".bench" / f"hit-daphne-{port}.log", "ab")
            procs[name] = subprocess.Popen(
                command, cwd=root, env=server_env, stdout=log, stderr=subprocess.STDOUT
            )
            conns[name] = _wait_for(http.client, port)
        (measure or _compare)(args, conns, tokens)
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(10)


def _wait_for(http_client, port: int):
    deadline = time.time() + 120
    while True:
        try:
            conn = http_client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/api/knowledge/health")
            conn.getresponse().read()
            return conn
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.3)


def _get(conn, path: str, token: str) -> tuple[float, float, int, dict, bytes]:
    headers = {"Accept": "application/json", "Authorization": f"Token {token}"}
    start = time.perf_counter()
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    client_ms = (time.perf_counter() - start) * 1000
    return (
        client_ms,
        float(resp.getheader("X-Server-Ms")),
        resp.status,
        dict(resp.getheaders()),
        body,
    )


_VOLATILE_HEADERS = {"date", "x-server-ms", "x-db-ms", "x-db-queries", "content-length"}


def _comparable(status: int, headers: dict, body: bytes) -> tuple:
    """An answer without what depends on the moment: freshness, ``as_of``, the timings."""
    data = json.loads(body)
    data.pop("as_of", None)
    data["next"] = data.get("next") is not None  # the cursor carries the page's moment
    for item in data.get("results", []):
        item.pop("freshness", None)
    names = sorted(k.lower() for k in headers if k.lower() not in _VOLATILE_HEADERS)
    kept = {k.lower(): v for k, v in headers.items() if k.lower() not in _VOLATILE_HEADERS}
    return status, names, sorted(kept.items()), data


def _first_difference(a, b, where="") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{where}[{i}]")
    return f"{where}: {str(a)[:200]} vs {str(b)[:200]}"


def _compare(args, conns: dict, tokens: dict[str, str]) -> None:
    paths = query_paths()
    samples = {(name, kind): ([], []) for name in conns for kind in QUERIES}
    for kind, (path, who) in paths.items():
        answers = {}
        for name, conn in conns.items():
            for _ in range(4):  # the miss, then hits
                _, _, status, headers, body = _get(conn, path, tokens[who])
            assert status == 200 and json.loads(body)["cached"] is True, body[:300]
            answers[name] = _comparable(status, headers, body)
        same = answers["this"] == answers["other"]
        print(f"{kind}: same answer (status, headers, body but freshness/as_of): {same}")
        if not same:
            for part, a, b in zip(
                ("status", "headers", "values", "body"),
                answers["this"],
                answers["other"],
                strict=True,
            ):
                if a != b:
                    print(f"  {part} differs: {_first_difference(a, b)}")
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        order = list(conns) if r % 2 == 0 else list(reversed(conns))
        for kind, (path, who) in paths.items():
            for _ in range(args.serial):  # request by request, so both see the same load
                for name in order:
                    server, client = samples[(name, kind)]
                    client_ms, server_ms, status, _, _ = _get(conns[name], path, tokens[who])
                    assert status == 200
                    server.append(server_ms)
                    client.append(client_ms)
    load.append(os.getloadavg()[0])
    print(
        f"load {load[0]:.1f} -> {load[1]:.1f}; {args.rounds} rounds x {args.serial} hits per "
        f"query and server, alternated; 'this' = {ROOT}, 'other' = {args.against}"
    )
    print(
        f"{'query':<6} {'srv med this':>12} {'srv med other':>13} {'ratio':>6} "
        f"{'cli med this':>12} {'cli med other':>13} {'ratio':>6}"
    )
    for kind in QUERIES:
        a_srv, a_cli = samples[("this", kind)]
        b_srv, b_cli = samples[("other", kind)]
        sa, sb = statistics.median(a_srv), statistics.median(b_srv)
        ca, cb = statistics.median(a_cli), statistics.median(b_cli)
        print(
            f"{kind:<6} {sa:>12.3f} {sb:>13.3f} {sa / sb:>6.2f} {ca:>12.3f} {cb:>13.3f} {ca / cb:>6.2f}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
