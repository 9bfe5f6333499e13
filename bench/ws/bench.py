#!/usr/bin/env python
"""Live-feed load and fault benchmark (`make bench-ws`). Results: docs/realtime.md.

Starts its own redis-server (private port, no persistence), a private SQLite database and
daphne subprocesses; one client process opens N WebSocket connections (at most 100
handshakes in flight), a publisher thread appends events to the log at a steady rate, and
every client records publish-to-receive latency and exactly which seqs it got.

Runs (select with --runs):
  fanout    N subscribers on /ws/knowledge/ (relay: one wake per process, in-memory fan-out)
  baseline  the same N on a plain Channels consumer fed by one group_send per event
  hold      --hold connections held open by one server process, a few events to each
  kill      kill -9 the server mid-stream, restart it; clients resume with since
  redis     restart the (private) Redis mid-stream
  stall     one client stops reading; the server closes it 4008; it resumes

Every run ends with: expected deliveries, delivered, missing, repeated/out-of-order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def raise_nofile(want: int = 20000) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(want, hard) if hard != resource.RLIM_INFINITY else want
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port(start: int = 8650, end: int = 8700) -> int:
    for port in range(start, end):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def wait_port(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


class Proc:
    def __init__(self, args, env, log):
        self.args, self.env, self.log, self.p = args, env, log, None

    def start(self):
        self.p = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT
        )
        return self

    def kill(self):
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait()

    def stop(self):
        if self.p and self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


# --- clients ---------------------------------------------------------------------------------


class Client:
    """One subscriber. Records every event it gets, raw (no dedupe), so the server's
    exactly-once is what is measured."""

    def __init__(
        self,
        url: str,
        subscribe: dict | None,
        stall: tuple[int, float] | None = None,
        local_addr: str | None = None,
    ):
        self.url = url
        self.local_addr = local_addr  # a source address 127.0.0.x (ephemeral ports per address)
        self.subscribe = subscribe  # None: the baseline consumer (no protocol)
        self.stall = stall  # (after n events, seconds) for the stall fault
        self.last: int | None = None
        self.seqs: list[int] = []
        self.latencies: list[float] = []
        self.repeated = 0
        self.closes: Counter = Counter()
        self.subscribed = asyncio.Event()
        self.connects = 0

    async def run(self, sem: asyncio.Semaphore, stop: asyncio.Event) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        from kx_sdk.backoff import parse_retry_after, retry_after_from_reason, retry_delay

        attempt = 0
        while not stop.is_set():
            retry_after = None  # the server refused us as busy and said when to come back
            try:
                sock = None
                extra = {}
                if self.local_addr and not self.stall:
                    extra["local_addr"] = (self.local_addr, 0)
                if self.stall:
                    sock = socket.socket()
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    if self.local_addr:
                        sock.bind((self.local_addr, 0))
                    host, port = self.url.split("//")[1].split("/")[0].split(":")
                    sock.connect((host, int(port)))
                async with sem:
                    ws = await connect(
                        self.url,
                        open_timeout=30,
                        ping_interval=None,
                        close_timeout=1,
                        max_queue=4 if self.stall else 64,
                        sock=sock,
                        **extra,
                    )
                self.connects += 1
                async with ws:
                    if self.subscribe is not None:
                        await ws.send(json.dumps({**self.subscribe, "since": self.last}))
                    async for raw in ws:
                        now = time.time()
                        msg = json.loads(raw)
                        kind = msg.get("type")
                        if kind == "event" or kind is None:
                            seq = msg["seq"]
                            if self.last is not None and seq <= self.last:
                                self.repeated += 1
                                continue
                            self.last = seq
                            self.seqs.append(seq)
                            self.latencies.append(now - msg["data"]["t"])
                            if self.stall and len(self.seqs) == self.stall[0]:
                                await asyncio.sleep(self.stall[1])  # stop reading
                        elif kind == "subscribed":
                            if self.last is None and msg.get("top") is not None:
                                self.last = msg["top"]
                            attempt = 0
                            self.subscribed.set()
            except ConnectionClosed as exc:
                self.closes[exc.rcvd.code if exc.rcvd else "abnormal"] += 1
                if exc.rcvd and exc.rcvd.code == 4013:  # the handshake bound, close form
                    retry_after = retry_after_from_reason(exc.rcvd.reason) or 1.0
            except InvalidStatus as exc:  # refused at the handshake: which status
                self.closes[f"HTTP {exc.response.status_code}"] += 1
                if exc.response.status_code == 503:  # the handshake bound
                    retry_after = parse_retry_after(exc.response.headers.get("Retry-After"))
            except (OSError, TimeoutError) as exc:
                self.closes[type(exc).__name__] += 1
            except Exception as exc:  # handshake refused while the server restarts, ...
                self.closes[type(exc).__name__] += 1
            if stop.is_set():
                return
            # The SDK's rule (kx_sdk/backoff.py): full jitter, after the server's Retry-After.
            await asyncio.sleep(retry_delay(attempt, retry_after, 0.2, 2.0, 3.0))
            attempt += 1

    def result(self) -> dict:
        return {
            "seqs": self.seqs,
            "latencies": self.latencies,
            "repeated": self.repeated,
            "closes": dict(self.closes),
            "connects": self.connects,
        }


def source_address(i: int, n_addrs: int) -> str | None:
    """Client i's source address: 127.0.0.1 for one, else spread over 127.0.0.2..n+1 (each
    address has its own ephemeral port range towards the server's port)."""
    return None if n_addrs <= 1 else f"127.0.0.{2 + i % n_addrs}"


class ClientGroup:
    """Clients driven by this process's event loop."""

    def __init__(self, url, subscribe, indices, n_addrs, stall_first=False):
        self.clients = [
            Client(url, subscribe, local_addr=source_address(i, n_addrs)) for i in indices
        ]
        if stall_first and self.clients:
            self.clients[0] = Client(url, subscribe, stall=(3, 15.0))
        self.stop = asyncio.Event()
        self.tasks = []

    def start(self, in_flight: int = 100) -> None:
        sem = asyncio.Semaphore(in_flight)
        self.tasks = [asyncio.create_task(c.run(sem, self.stop)) for c in self.clients]

    def subscribed(self) -> int:
        return sum(c.subscribed.is_set() for c in self.clients)

    async def finish(self, expected: set, settle: float) -> list[dict]:
        """Wait until every client has every expected seq (or ``settle`` s), stop, results."""
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            if all(set(c.seqs) >= expected for c in self.clients):
                break
            await asyncio.sleep(0.2)
        self.stop.set()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        return [c.result() for c in self.clients]


def _child_main(pipe, url, subscribe, indices, n_addrs, in_flight) -> None:
    """A client process: its share of the sockets; reports how many are subscribed, then
    (told the published seqs) waits for them and sends every client's result back."""
    raise_nofile()

    async def run():
        group = ClientGroup(url, subscribe, indices, n_addrs)
        group.start(in_flight)
        last = -1
        while True:
            n = group.subscribed()
            if n != last:
                pipe.send(("subscribed", n))
                last = n
            if pipe.poll():
                break
            await asyncio.sleep(0.2)
        _, expected, settle = pipe.recv()
        results = await group.finish(set(expected), settle)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        pipe.send(("result", results, ru.ru_utime + ru.ru_stime))

    asyncio.run(run())


class RemoteGroup:
    """The same as ``ClientGroup``, in a child process (one client process saturates a core
    long before the server does at 10,000 sockets)."""

    def __init__(self, url, subscribe, indices, n_addrs, in_flight):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_child_main,
            args=(child, url, subscribe, list(indices), n_addrs, in_flight),
            daemon=True,
        )
        self.n_subscribed = 0
        self.cpu = 0.0

    def start(self, in_flight: int = 100) -> None:
        self.proc.start()

    def subscribed(self) -> int:
        while self.pipe.poll():
            msg = self.pipe.recv()
            if msg[0] == "subscribed":
                self.n_subscribed = msg[1]
        return self.n_subscribed

    async def finish(self, expected: set, settle: float) -> list[dict]:
        self.pipe.send(("expect", sorted(expected), settle))

        def wait():
            while True:
                msg = self.pipe.recv()
                if msg[0] == "result":
                    return msg

        _, results, self.cpu = await asyncio.to_thread(wait)
        await asyncio.to_thread(self.proc.join, 10)
        return results


# --- publishers ------------------------------------------------------------------------------


def publish_log(n: int, rate: float, pad: int, out: list, stop_flag: threading.Event) -> None:
    """Append n events at `rate`/s through the event log (the product path)."""
    from django.db import close_old_connections, transaction

    from knowledge.events import publish_event

    start = time.monotonic()
    for i in range(n):
        if stop_flag.is_set():
            return
        target = start + i / rate
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for attempt in range(20):  # the DB may be busy while the server restarts
            try:
                with transaction.atomic():
                    ev = publish_event(
                        "knowledge_broadcast",
                        {"i": i, "t": time.time(), "pad": "x" * pad},
                        knowledge_type="risk_pattern",
                        source="bench",
                    )
                out.append(ev.seq)
                break
            except Exception:
                close_old_connections()
                time.sleep(0.1 * (attempt + 1))


def publish_group(n: int, rate: float, pad: int, out: list) -> None:
    """The baseline: one group_send per event on the channel layer."""
    from channels.layers import get_channel_layer

    from bench.ws.group_consumer import GROUP

    async def run():
        layer = get_channel_layer()
        start = time.monotonic()
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            text = json.dumps({"seq": i + 1, "data": {"i": i, "t": time.time(), "pad": "x" * pad}})
            await layer.group_send(GROUP, {"type": "bench.message", "text": text})
            out.append(i + 1)
        await asyncio.sleep(0.5)

    asyncio.run(run())


# --- one run ---------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="ke-bench-ws-"))
        self.redis_port = args.redis_port
        self.redis = None
        self.servers: list[Proc] = []
        self.fleet: list[subprocess.Popen] = []
        self.env = {
            **os.environ,
            "SQLITE_PATH": str(self.tmp / "bench.sqlite3"),
            "DATABASE_URL": "",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "KE_INSTANCE": f"bench{os.getpid()}",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "KE_WS_STALL_SECONDS": "3",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        if args.database_url:
            self.env["DATABASE_URL"] = args.database_url
        if args.no_redis:  # embedded mode, as `make run` without REDIS_URL
            self.env["REDIS_URL"] = ""

    # infrastructure
    def start_redis(self):
        if self.args.no_redis:
            return
        self.redis = Proc(
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxclients",
                "20000",
            ],
            self.env,
            self.tmp / "redis.log",
        ).start()
        wait_port(self.redis_port)

    def start_server(self, port: int | None = None) -> tuple[Proc, int]:
        port = port or self.args.port or free_port()
        if self.args.server == "uvicorn":
            from bench.runner import server_command

            cmd = server_command("uvicorn", port, "bench.ws.asgi:application")
        else:
            # --server-profile: the server under cProfile (written when it stops).
            profile = ["-m", "cProfile", "-o", self.args.server_profile] * bool(
                self.args.server_profile
            )
            cmd = [
                sys.executable,
                *profile,
                "-m",
                "daphne",
                "-e",
                f"tcp:port={port}:interface=127.0.0.1:backlog=2048",
                "bench.ws.asgi:application",
            ]
        proc = Proc(cmd, self.env, self.tmp / f"{self.args.server}-{port}.log").start()
        self.servers.append(proc)  # stopped at the end even if it never listens
        wait_port(port)
        return proc, port

    def start_fleet(self, port: int) -> None:
        """Every Procfile process but ``web`` (the built-in workers, alerts, pruner, sweep), as
        `make run` starts them, on the bench's database and Redis, each in its own session."""
        env = {**self.env, "KE_TIMESERIES_SCRAPE_URL": f"http://127.0.0.1:{port}/metrics"}
        for line in (ROOT / "Procfile").read_text().splitlines():
            name, _, cmd = line.partition(":")
            if not cmd.strip() or name.strip() == "web":
                continue
            p = subprocess.Popen(
                ["bash", "-c", "exec " + cmd.strip()],
                cwd=ROOT,
                env=env,
                stdout=open(self.tmp / f"fleet-{name.strip()}.log", "ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.fleet.append(p)
        print(f"fleet: {len(self.fleet)} Procfile processes (logs in {self.tmp})", flush=True)

    def stop_fleet(self) -> None:
        for p in self.fleet:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.fleet:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self.fleet = []

    def setup_django(self):
        os.environ.update(self.env)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        from identity.actions import do_create_worker

        _, self.token = do_create_worker("bench-client", None)

    def close(self):
        self.stop_fleet()
        for s in self.servers:
            s.stop()
        if self.redis:
            self.redis.stop()
        if self.args.keep_logs:
            print(f"logs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # a run
    async def run_clients(
        self,
        name,
        url,
        n,
        subscribe,
        events,
        rate,
        pad,
        publisher="log",
        fault=None,
        stall_client=False,
        settle=5.0,
    ):
        groups = self.client_groups(url, n, subscribe, stall_client)
        t0 = time.monotonic()
        rss0 = self.server_rss()
        threads0 = self.server_threads_cpu()
        for g in groups:
            g.start(self.args.in_flight)
        next_note = t0 + 5
        while (subscribed := sum(g.subscribed() for g in groups)) < n:
            await asyncio.sleep(0.1)
            if time.monotonic() > next_note:
                next_note += 5
                print(
                    f"   {subscribed}/{n} subscribed after {time.monotonic() - t0:.0f} s",
                    flush=True,
                )
            if time.monotonic() - t0 > self.args.connect_timeout:
                break
        connect_s = time.monotonic() - t0
        subscribed = sum(g.subscribed() for g in groups)
        # The server's CPU for connecting and subscribing everyone, per thread kind.
        connect_cpu = {
            k: round(v - threads0.get(k, 0.0), 2) for k, v in self.server_threads_cpu().items()
        }
        load_at_connect = os.getloadavg()[0]
        await asyncio.sleep(1.0)
        rss1 = self.server_rss()
        redis0 = self.redis_info()
        cpu0 = self.cpu()
        published: list[int] = []
        stop_flag = threading.Event()
        if publisher == "log":
            th = threading.Thread(
                target=publish_log, args=(events, rate, pad, published, stop_flag)
            )
        else:
            th = threading.Thread(target=publish_group, args=(events, rate, pad, published))
        th.start()
        if fault:
            await asyncio.sleep(events / rate / 3)
            await fault()
        while th.is_alive():
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        server_stats = await asyncio.to_thread(self.server_stats, url) if subscribe else {}
        # Wait until everyone has everything (or the settle time passes).
        settle += 30 if fault or stall_client else 0
        parts = await asyncio.gather(*(g.finish(set(published), settle) for g in groups))
        cpu = {k: round(v - cpu0.get(k, 0), 1) for k, v in self.cpu().items()}
        results = [r for part in parts for r in part]
        remote_cpu = sum(getattr(g, "cpu", 0.0) for g in groups)
        if remote_cpu:
            cpu["client processes (whole run)"] = round(remote_cpu, 1)
        row = self.report(name, results, published, connect_s)
        row["subscribed"] = subscribed
        row["server_cpu_connect_s"] = {k: v for k, v in connect_cpu.items() if v}
        row["server_cpu_ms_per_socket"] = round(
            1000 * sum(connect_cpu.values()) / max(subscribed, 1), 2
        )
        row["load_1min"] = [round(load_at_connect, 1), round(os.getloadavg()[0], 1)]
        # Redis work the server's sockets cause: pub/sub channels while they are connected.
        row["redis_pubsub_channels"] = redis0.get("pubsub_channels")
        row["server_slow_closes_total"] = server_stats.get("slow_closes")
        if rss0 and rss1:
            row["server_rss_mb"] = [round(rss0 / 1024, 1), round(rss1 / 1024, 1)]
            row["rss_kb_per_conn"] = round((rss1 - rss0) / max(n, 1), 1)
        print(
            f"   connect: {subscribed}/{n} subscribed in {connect_s:.1f} s, server CPU "
            f"{row['server_cpu_ms_per_socket']} ms per socket {row['server_cpu_connect_s']}, "
            f"load {row['load_1min']}",
            flush=True,
        )
        print(
            f"   cpu seconds during the run: {cpu}; server realtime stats: {server_stats}; "
            f"server RSS MB before/after connecting: {row.get('server_rss_mb')}; "
            f"Redis pub/sub channels while connected: {row['redis_pubsub_channels']}",
            flush=True,
        )
        return row

    def client_groups(self, url, n, subscribe, stall_client):
        """Split the n clients over --client-procs processes (the stall fault runs in this
        process's loop, its stalled client first)."""
        procs = max(1, min(self.args.client_procs, n))
        if procs == 1 or stall_client:
            return [ClientGroup(url, subscribe, range(n), self.args.source_addrs, stall_client)]
        shares = [range(i, n, procs) for i in range(procs)]
        groups = [
            RemoteGroup(url, subscribe, share, self.args.source_addrs, self.args.in_flight)
            for share in shares
        ]
        return groups

    def redis_info(self) -> dict:
        import redis

        if self.args.no_redis:
            return {}
        try:
            return redis.Redis(port=self.redis_port).info("stats")
        except Exception:
            return {}

    def server_rss(self) -> int | None:
        """VmRSS (KiB) of the first server process."""
        try:
            for line in Path(f"/proc/{self.servers[0].p.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except (OSError, IndexError):
            return None
        return None

    def server_stats(self, ws_url: str) -> dict:
        import urllib.request

        base = ws_url.replace("ws://", "http://").split("/ws/")[0]
        req = urllib.request.Request(
            f"{base}/api/knowledge/stats", headers={"Authorization": f"Token {self.token}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                rt = json.loads(r.read()).get("realtime", {})
            keys = ("connections", "slow_closes", "delivered", "handshakes_refused")
            return {k: rt.get(k) for k in keys}
        except Exception as exc:
            return {"error": str(exc)}

    def cpu(self) -> dict:
        """CPU seconds used so far by this client process and by each server process."""
        ru = resource.getrusage(resource.RUSAGE_SELF)
        out = {"client+publisher": ru.ru_utime + ru.ru_stime}
        tick = os.sysconf("SC_CLK_TCK")
        for s in self.servers:
            try:
                fields = Path(f"/proc/{s.p.pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[f"server {s.p.pid}"] = (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError):
                pass
        if self.fleet:
            out["fleet"] = self.fleet_cpu(tick)
        return out

    def server_threads_cpu(self) -> dict:
        """CPU seconds of the first server process per thread kind (main: the event loop and
        Twisted; the sync thread of ``sync_to_async``; the relay's database threads)."""
        tick = os.sysconf("SC_CLK_TCK")
        out: Counter = Counter()
        try:
            tasks = list(Path(f"/proc/{self.servers[0].p.pid}/task").iterdir())
        except (OSError, IndexError):
            return {}
        for task in tasks:
            try:
                name = (task / "comm").read_text().strip().rstrip("0123456789_-")
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[name or "?"] += (int(fields[11]) + int(fields[12])) / tick
        return dict(out)

    def fleet_cpu(self, tick: int) -> float:
        """CPU seconds of every live process in the fleet's sessions (worker children too)."""
        sessions = {p.pid for p in self.fleet}
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) in sessions:  # session id
                total += int(fields[11]) + int(fields[12])
        return total / tick

    def report(self, name, results, published, connect_s):
        expected = set(published)
        lat = [x for r in results for x in r["latencies"]]
        delivered = sum(len(r["seqs"]) for r in results)
        lost_per = [len(expected - set(r["seqs"])) for r in results]
        missing = sum(lost_per)
        repeated = sum(r["repeated"] for r in results)
        out_of_order = sum(1 for r in results if r["seqs"] != sorted(r["seqs"]))
        closes = Counter()
        for r in results:
            closes.update(r["closes"])
        row = {
            "run": name,
            "clients": len(results),
            "events": len(published),
            "expected": len(published) * len(results),
            "delivered": delivered,
            "missing": missing,
            "repeated": repeated,
            "out_of_order_clients": out_of_order,
            "p50_ms": round(percentile(lat, 50) * 1000, 1),
            "p95_ms": round(percentile(lat, 95) * 1000, 1),
            "p99_ms": round(percentile(lat, 99) * 1000, 1),
            "connect_s": round(connect_s, 1),
            "closes": dict(closes),
            "reconnects": sum(max(r["connects"] - 1, 0) for r in results),
            "sockets_missing_any": sum(1 for x in lost_per if x),
            "max_lost_per_socket": max(lost_per, default=0),
            "sockets_with_repeats": sum(1 for r in results if r["repeated"]),
        }
        print(json.dumps(row), flush=True)
        return row


async def main_async(args, bench: Bench):
    rows = []
    runs = args.runs.split(",")
    sub = {"action": "subscribe", "sources": ["bench"]}
    proc, port = bench.start_server()
    url = f"ws://127.0.0.1:{port}/ws/knowledge/?token={bench.token}"
    if args.fleet:
        bench.start_fleet(port)
        await asyncio.sleep(args.fleet_warmup)

    if "fanout" in runs:
        rows.append(
            await bench.run_clients(
                "fanout (relay)", url, args.clients, sub, args.events, args.rate, args.pad
            )
        )
    if "baseline" in runs:
        rows.append(
            await bench.run_clients(
                "baseline (group_send)",
                f"ws://127.0.0.1:{port}/ws/bench/group/",
                args.clients,
                None,
                args.events,
                args.rate,
                args.pad,
                publisher="group",
            )
        )
    if "hold" in runs:
        rows.append(
            await bench.run_clients(
                f"hold {args.hold}",
                url,
                args.hold,
                sub,
                args.hold_events,
                args.hold_rate,
                args.pad,
                settle=20,
            )
        )
    if "kill" in runs:
        state = {"proc": proc}

        async def kill_restart():
            state["proc"].kill()
            bench.servers.remove(state["proc"])
            await asyncio.sleep(1.0)
            state["proc"], _ = await asyncio.to_thread(bench.start_server, port)

        rows.append(
            await bench.run_clients(
                "fault: kill -9 server",
                url,
                args.fault_clients,
                sub,
                args.fault_events,
                args.fault_rate,
                args.pad,
                fault=kill_restart,
            )
        )
        proc = state["proc"]
    if "redis" in runs:

        async def restart_redis():
            bench.redis.kill()
            await asyncio.sleep(2.0)
            await asyncio.to_thread(bench.start_redis)

        rows.append(
            await bench.run_clients(
                "fault: restart Redis",
                url,
                args.fault_clients,
                sub,
                args.fault_events,
                args.fault_rate,
                args.pad,
                fault=restart_redis,
            )
        )
    if "stall" in runs:
        rows.append(
            await bench.run_clients(
                "fault: stalled client",
                url,
                args.fault_clients,
                sub,
                args.fault_events,
                args.fault_rate,
                4096,
                stall_client=True,
            )
        )
    return rows


def print_table(rows):
    print()
    print(
        "| run | clients | events | expected | delivered | missing | repeated | out of order | P50 ms | P95 ms | P99 ms | client-side closes | server 4008s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run']} | {r['clients']} | {r['events']} | {r['expected']} | {r['delivered']} | {r['missing']} "
            f"| {r['repeated']} | {r['out_of_order_clients']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} "
            f"| {r['closes'] or '-'} | {r.get('server_slow_closes_total', '-')} |"
        )


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", default="fanout,baseline,hold,kill,redis,stall")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--events", type=int, default=100)
    ap.add_argument("--rate", type=float, default=10.0, help="events per second")
    ap.add_argument("--pad", type=int, default=200, help="payload padding, bytes")
    ap.add_argument("--hold", type=int, default=5000)
    ap.add_argument("--hold-events", type=int, default=5, help="events sent to the held sockets")
    ap.add_argument("--hold-rate", type=float, default=1.0, help="their rate, events per second")
    ap.add_argument(
        "--client-procs",
        type=int,
        default=1,
        help="client processes the sockets are spread over (1: this process; 10,000 sockets "
        "need several: one client process saturates a core first)",
    )
    ap.add_argument(
        "--source-addrs",
        type=int,
        default=1,
        help="source addresses 127.0.0.2..N+1 for the client sockets (1: 127.0.0.1); each has "
        "its own ~28,000 ephemeral ports towards the server",
    )
    ap.add_argument(
        "--in-flight", type=int, default=100, help="handshakes in flight per client process"
    )
    ap.add_argument("--connect-timeout", type=float, default=300, help="seconds to subscribe all")
    ap.add_argument(
        "--fleet",
        action="store_true",
        help="also run every Procfile process but web (built-in workers, alerts, pruner, sweep) "
        "on the bench's database and Redis, as `make run` does",
    )
    ap.add_argument(
        "--no-redis",
        action="store_true",
        help="embedded mode (no REDIS_URL: local cache, in-memory layer), as `make run`; the "
        "publisher is another process, so the relay learns of its commits by polling",
    )
    ap.add_argument("--keep-logs", action="store_true", help="keep the server/fleet logs")
    ap.add_argument(
        "--server-profile",
        default="",
        help="run daphne under cProfile and write its stats to this file when it stops",
    )
    ap.add_argument("--fleet-warmup", type=float, default=5.0, help="seconds before the runs")
    ap.add_argument("--fault-clients", type=int, default=200)
    ap.add_argument("--fault-events", type=int, default=200)
    ap.add_argument("--fault-rate", type=float, default=20.0)
    ap.add_argument("--redis-port", type=int, default=6390)
    ap.add_argument(
        "--port",
        type=int,
        default=0,
        help="the server's port (default: the first free one in 8650-8699)",
    )
    ap.add_argument(
        "--server",
        choices=["daphne", "uvicorn"],
        default="daphne",
        help="ASGI server (uvicorn: httptools + websockets; the daphne fast path is daphne's "
        "only: KE_WS_DIRECT_WRITE=false turns it off there; docs/performance.md)",
    )
    ap.add_argument(
        "--database-url", default="", help="PostgreSQL URL (default: a private SQLite file)"
    )
    args = ap.parse_args()
    print(f"open files limit: {raise_nofile()}", flush=True)
    # SIGTERM (timeout, Ctrl-C from make) still stops Redis, the servers and the fleet.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    bench = Bench(args)
    try:
        bench.start_redis()
        bench.setup_django()
        rows = asyncio.run(main_async(args, bench))
        print_table(rows)
        # The baseline is at-most-once by design: its losses are the point of the comparison.
        bad = [
            r
            for r in rows
            if not r["run"].startswith("baseline")
            and (r["missing"] or r["repeated"] or r["out_of_order_clients"])
        ]
        sys.exit(1 if bad else 0)
    finally:
        bench.close()


if __name__ == "__main__":
    main()
