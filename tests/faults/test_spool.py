"""The SDK spool with real processes: five SDK workers broadcasting 1,000 items through a
database outage during which one of them is killed -9 and restarted; a network cut between a
worker and the server (a TCP proxy the test controls) while the live feed listens through it.

Each test starts its own daphne on a private PostgreSQL cluster and redis-server.

The outage lasts ``KX_SPOOL_OUTAGE_SECONDS`` (default 15 s, to keep the fault suite short in
CI); the issue's 60 s outage is the documented manual run (docs/operations.md)::

    KX_SPOOL_OUTAGE_SECONDS=60 KX_FAULT_FIGURES=/tmp/spool.jsonl \\
        .venv/bin/python -m pytest -q -m faults tests/faults/test_spool.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kx_sdk import BaseWorker, HttpTransport, Spool, SpoolFullError
from kx_sdk.live import LiveFeed
from tests.faults.client import call
from tests.faults.figures import report
from tests.faults.proxy import TcpProxy
from tests.faults.services import ROOT, ProjectProcess, service_env, spare_port, wait_until

pytestmark = pytest.mark.faults

OUTAGE_SECONDS = float(os.environ.get("KX_SPOOL_OUTAGE_SECONDS", "15"))
WORKERS = [f"spool{i}" for i in range(5)]
PER_WORKER = 200  # 1,000 in all
PER_CYCLE = 4


def create_workers(names: list[str], env: dict) -> dict[str, str]:
    """Worker identities made by the project's own action, in one process; name -> token."""
    code = (
        "import json; from identity.actions import do_create_worker; "
        f"print(json.dumps({{n: do_create_worker(n)[1] for n in {names!r}}}))"
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def spool_depth(path: Path) -> int:
    """Read the worker's spool from outside (WAL: readers never block its writer)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute("SELECT count(*) FROM spool").fetchone()[0]


class WorkerProcess:
    def __init__(self, name: str, token: str, url: str, home: Path, interval: float) -> None:
        self.name = name
        self.spool = home / f"{name}.spool.sqlite3"
        self.progress = home / f"{name}.progress"
        self.args = [
            sys.executable,
            "-m",
            "tests.faults.spool_worker",
            name,
            "--url",
            url,
            "--token",
            token,
            "--spool",
            str(self.spool),
            "--progress",
            str(self.progress),
            "--count",
            str(PER_WORKER),
            "--per-cycle",
            str(PER_CYCLE),
            "--interval",
            str(interval),
        ]
        self.proc = ProjectProcess(self.args, service_env(), name)

    def start(self) -> WorkerProcess:
        self.proc.start()
        return self

    def depth(self) -> int:
        return spool_depth(self.spool)

    def sent(self) -> int:
        return int(self.progress.read_text()) if self.progress.exists() else 0


@pytest.fixture
def env(pg_db, redis_server):
    return service_env(DATABASE_URL=pg_db, REDIS_URL=redis_server.url)


@pytest.fixture
def server(env):
    proc = ProjectProcess.daphne(spare_port(), env).start().wait_listening()
    yield proc
    proc.cleanup()


def server_counts(pg_cluster, pg_db: str) -> dict:
    db = pg_db.rsplit("/", 1)[1]
    row = pg_cluster.psql(
        "SELECT (SELECT count(*) FROM knowledge_knowledgeitem), "
        "(SELECT count(DISTINCT subject) FROM knowledge_knowledgeitem), "
        "(SELECT count(*) FROM knowledge_event WHERE kind = 'knowledge_broadcast'), "
        "(SELECT count(DISTINCT key) FROM knowledge_idempotencyrecord)",
        db=db,
    )
    items, subjects, events, keys = (int(v) for v in row.split("|"))
    return {"items": items, "subjects": subjects, "events": events, "keys": keys}


def reported_spool(pg_cluster, pg_db: str, name: str) -> dict:
    db = pg_db.rsplit("/", 1)[1]
    return json.loads(
        pg_cluster.psql(f"SELECT state->'spool' FROM workers_worker WHERE name = '{name}'", db=db)
    )


def test_five_workers_broadcast_1000_items_through_a_database_outage_one_killed_9(
    env, server, pg_cluster, pg_db, tmp_path
):
    tokens = create_workers(WORKERS, env)
    # Paced so that items go out before, during and after the outage.
    interval = max(0.05, (OUTAGE_SECONDS + 10) * PER_CYCLE / PER_WORKER)
    fleet = {
        n: WorkerProcess(n, tokens[n], server.url, tmp_path, interval).start() for n in WORKERS
    }
    stored = lambda: server_counts(pg_cluster, pg_db)["items"]  # noqa: E731
    try:
        wait_until(lambda: stored() >= 100, 120, "100 items stored before the outage", 0.2)
        pg_cluster.stop()
        outage = time.monotonic()
        wait_until(
            lambda: all(w.depth() > 0 for w in fleet.values()), 60, "every worker to spool", 0.2
        )
        victim = fleet[WORKERS[0]]
        victim.proc.kill()  # kill -9 in the middle of the outage
        kept = victim.depth()
        victim.proc.cleanup()
        fleet[victim.name] = victim = WorkerProcess(
            victim.name, tokens[victim.name], server.url, tmp_path, interval
        ).start()
        wait_until(lambda: victim.depth() > kept, 60, "the restarted worker to spool", 0.2)
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage)))  # the fault itself
        report("spool_outage_s", time.monotonic() - outage)
        report("spool_depth_at_heal", sum(w.depth() for w in fleet.values()))
        report("spool_sent_or_spooled_at_heal", sum(w.sent() for w in fleet.values()))

        pg_cluster.start()
        healed = time.monotonic()
        health = f"{server.url}/api/knowledge/health"
        wait_until(lambda: call(health).body["status"] == "ok", 60, "health to heal", 0.05)
        report("spool_server_healthy_after_heal_s", time.monotonic() - healed)
        wait_until(
            lambda: all(w.depth() == 0 for w in fleet.values()), 300, "the spools to drain", 0.1
        )
        report("spool_drained_after_heal_s", time.monotonic() - healed)
        for worker in fleet.values():
            assert worker.proc.proc.wait(300) == 0, worker.proc.log()[-3000:]
        report("spool_all_stored_after_heal_s", time.monotonic() - healed)
        assert all(w.depth() == 0 and w.sent() == PER_WORKER for w in fleet.values())
    finally:
        for worker in fleet.values():
            worker.proc.cleanup()
    counts = server_counts(pg_cluster, pg_db)
    report("spool_items_stored", counts["items"])
    # 0 lost, 0 duplicated: one item, one event and one key per broadcast.
    assert counts == {"items": 1000, "subjects": 1000, "events": 1000, "keys": 1000}
    db = pg_db.rsplit("/", 1)[1]
    subjects = set(pg_cluster.psql("SELECT subject FROM knowledge_knowledgeitem", db=db).split())
    assert subjects == {f"{n}-{i}" for n in WORKERS for i in range(PER_WORKER)}
    for name in WORKERS:  # the last heartbeat reports an empty spool
        assert reported_spool(pg_cluster, pg_db, name) == {
            "depth": 0,
            "oldest_age_seconds": 0.0,
            "dead_letters": 0,
        }


class FeedThread:
    """A LiveFeed on its own event loop in a thread, collecting the subjects it delivers."""

    def __init__(self, url: str, token: str) -> None:
        self.subjects: list[str] = []
        self.statuses: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.feed = LiveFeed(
            url,
            token,
            types=["risk_pattern"],
            since=0,
            backoff_base=0.1,
            backoff_cap=1.0,
            fallback_after=0,  # stay on the socket: the reconnect is what is tested
            on_status=self.statuses.append,
        )
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),))
        self.thread.start()

    async def _run(self) -> None:
        async for event in self.feed:
            self.subjects.append(event["data"]["item"]["subject"])

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.feed.close(), self.loop).result(10)
        self.thread.join(10)
        self.loop.close()


def test_a_network_cut_fills_the_spool_which_drains_and_the_live_feed_reconnects(
    env, server, pg_cluster, pg_db, tmp_path
):
    tokens = create_workers(["think", "learning"], env)
    proxy = TcpProxy(server.port).start()
    spool = Spool(tmp_path / "think.spool.sqlite3", max_entries=20)
    transport = HttpTransport(
        proxy.url, tokens["think"], worker="think", retries=1, backoff=0.05, timeout=5
    )
    worker = BaseWorker(transport, spool=spool, spool_retry=0.2, spool_retry_max=1.0, interval=0)

    def send(subject: str) -> str:
        body = {"pattern": subject, "risk_level": "high"}
        return worker.broadcast("risk_pattern", body, 0.6)["outcome"]

    feed = FeedThread(proxy.url, tokens["learning"])
    try:
        wait_until(lambda: feed.feed.status == "live", 30, "the live feed to subscribe")
        assert [send(f"before-{i}") for i in range(5)] == ["created"] * 5
        wait_until(lambda: len(feed.subjects) == 5, 30, "the feed to deliver 5 events")

        proxy.cut()
        assert [send(f"during-{i}") for i in range(20)] == ["spooled"] * 20
        with pytest.raises(SpoolFullError):  # the bound: refused, said so, nothing dropped
            send("refused-while-full")
        assert spool.status()["depth"] == 20
        wait_until(lambda: feed.feed.status == "reconnecting", 30, "the feed to see the cut")

        proxy.restore()
        restored = time.monotonic()
        wait_until(lambda: worker.run_cycle() and spool.depth() == 0, 60, "the spool to drain")
        report("network_cut_spool_drained_s", time.monotonic() - restored)
        assert send("refused-while-full") == "created"  # the caller resends what was refused
        assert [send(f"after-{i}") for i in range(5)] == ["created"] * 5
        wait_until(lambda: len(feed.subjects) >= 31, 30, "the feed to deliver 31 events")
        report("network_cut_feed_caught_up_s", time.monotonic() - restored)
        worker.heartbeat()
    finally:
        feed.close()
        proxy.cut()
        spool.close()
    expected = (
        [f"before-{i}" for i in range(5)]
        + [f"during-{i}" for i in range(20)]
        + ["refused-while-full"]
        + [f"after-{i}" for i in range(5)]
    )
    assert feed.subjects == expected  # in order, each once, through the reconnect
    assert feed.feed.stats["reconnects"] >= 1 and proxy.connections >= 2
    assert server_counts(pg_cluster, pg_db) == {
        "items": 31,
        "subjects": 31,
        "events": 31,
        "keys": 31,
    }
    assert reported_spool(pg_cluster, pg_db, "think")["depth"] == 0
