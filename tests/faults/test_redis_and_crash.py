"""Redis killed and restarted under live sockets; the server killed -9 in the middle of a keyed
bulk broadcast and the bulk retried. Real daphne, a private redis-server, a private database."""

from __future__ import annotations

import threading
import time

import pytest

from tests.faults.client import FeedSocket, call, create_worker, risk
from tests.faults.figures import report
from tests.faults.services import ProjectProcess, spare_port, wait_until

pytestmark = pytest.mark.faults
SOCKETS = 3


def subjects(feed: FeedSocket) -> list[str]:
    return [f["data"]["item"]["subject"] for f in feed.frames if f["type"] == "event"]


def test_redis_killed_and_restarted_under_live_sockets(sqlite_env, redis_server):
    env = {**sqlite_env, "REDIS_URL": redis_server.url}
    think, learning = create_worker("think", env), create_worker("learning", env)
    server = ProjectProcess.daphne(spare_port(), env).start().wait_listening()
    api = f"{server.url}/api/knowledge"
    feeds = []
    try:
        for _ in range(SOCKETS):
            feed = FeedSocket(server.url, learning)
            feed.send({"action": "subscribe", "since": 0})
            feed.next("subscribed")
            feeds.append(feed)
        names = []

        def broadcast(name: str) -> None:
            reply = call(f"{api}/broadcast", "POST", think, risk(name, key=f"k-{name}"))
            assert reply.status == 201, reply.body
            names.append(name)

        broadcast("before")
        redis_server.kill()
        for i in range(3):  # Redis down: the API still stores, the feed still delivers
            broadcast(f"during-{i}")
        for feed in feeds:
            feed.next("event", where=lambda f: f["data"]["item"]["subject"] == "during-2")
        degraded = call(f"{api}/health")
        assert degraded.status == 200 and degraded.body["status"] == "degraded"
        redis_server.start()
        restarted = time.monotonic()
        broadcast("after")
        for feed in feeds:
            feed.next("event", timeout=15, where=lambda f: f["data"]["item"]["subject"] == "after")
        report("redis_restart_feed_resumed_s", time.monotonic() - restarted)
        health = wait_until(lambda: call(f"{api}/health").body["status"] == "ok", 15, "health")
        assert health
    finally:
        for feed in feeds:
            feed.close()
        server.cleanup()
    for feed in feeds:  # every event once, in order, on every socket
        assert subjects(feed) == names


def test_server_killed_mid_bulk_then_keyed_retry_loses_and_duplicates_nothing(sqlite_env):
    env = sqlite_env
    think = create_worker("think", env)
    port = spare_port()
    server = ProjectProcess.daphne(port, env).start().wait_listening()
    api = f"{server.url}/api/knowledge"
    bulk = {"items": [risk(f"bulk-{i}", key=f"bulk-{i}") for i in range(1000)]}
    outcome = {}

    def send():
        try:
            outcome["reply"] = call(f"{api}/broadcast/bulk", "POST", think, bulk, timeout=60)
        except OSError as exc:  # the server died under the request
            outcome["error"] = exc

    try:
        sender = threading.Thread(target=send)
        sender.start()
        # Mid-bulk: kill -9 once the server has stored part of it (items appear chunk by chunk).
        db = env["KX_TEST_SQLITE"]
        import sqlite3

        def stored() -> int:
            with sqlite3.connect(db, timeout=30) as conn:
                return conn.execute("SELECT count(*) FROM knowledge_knowledgeitem").fetchone()[0]

        wait_until(lambda: stored() > 0, 60, "the first chunk to commit", interval=0.01)
        server.kill()
        sender.join(30)
        assert "error" in outcome, "the bulk finished before the kill: nothing was tested"
        partial = stored()
        report("kill9_mid_bulk_stored_before_kill", partial)
        assert 0 < partial < 1000

        restarted = time.monotonic()
        server = ProjectProcess.daphne(port, env).start().wait_listening()
        report("kill9_server_back_s", time.monotonic() - restarted)
        retry = call(f"{api}/broadcast/bulk", "POST", think, bulk, timeout=120)
        assert retry.status == 200, retry.body
        statuses = [r["status"] for r in retry.body["results"]]
        assert statuses.count(200) == partial and statuses.count(201) == 1000 - partial
        with sqlite3.connect(db, timeout=30) as conn:
            items = conn.execute(
                "SELECT count(*), count(DISTINCT subject) FROM knowledge_knowledgeitem"
            ).fetchone()
            events = conn.execute(
                "SELECT count(*) FROM knowledge_event WHERE kind = 'knowledge_broadcast'"
            ).fetchone()[0]
        assert items == (1000, 1000) and events == 1000  # nothing lost, nothing twice
    finally:
        server.cleanup()
