"""PostgreSQL stopped and started under a real daphne: fast 503s with Retry-After, health
says ``fail``, and everything heals without a restart."""

from __future__ import annotations

import time

import pytest

from tests.faults.client import FeedSocket, call, create_worker, risk
from tests.faults.figures import report
from tests.faults.services import ProjectProcess, service_env, spare_port, wait_until

pytestmark = pytest.mark.faults


@pytest.fixture
def server(pg_db):
    env = service_env(DATABASE_URL=pg_db)
    token = create_worker("think", env)
    proc = ProjectProcess.daphne(spare_port(), env).start().wait_listening()
    proc.token = token
    yield proc
    proc.cleanup()


def test_database_stopped_answers_503_with_retry_after_and_heals(server, pg_cluster):
    api = f"{server.url}/api/knowledge"
    assert call(f"{api}/broadcast", "POST", server.token, risk("before")).status == 201
    assert call(f"{api}/health").body["status"] == "ok"

    pg_cluster.stop()

    requests = [
        ("POST", "broadcast", risk("during")),
        ("GET", "query", None),
        ("GET", "events?since=0", None),
        ("GET", "stats", None),
        ("GET", "receive/think", None),
    ]
    for method, path, body in requests:
        start = time.monotonic()
        reply = call(f"{api}/{path}", method, server.token, body)
        report(f"db_outage_503_s[{path}]", time.monotonic() - start)
        assert reply.status == 503, (path, reply.status, reply.body)
        assert int(reply.headers["retry-after"]) > 0, path
        assert reply.headers["content-type"].startswith("application/json"), path
        assert set(reply.body) == {"detail", "errors"} and "database" in reply.body["detail"], path
    start = time.monotonic()
    health = call(f"{api}/health")
    report("db_outage_health_fail_s", time.monotonic() - start)
    assert health.status == 503 and health.body["status"] == "fail"
    assert health.body["checks"]["database"]["ok"] is False

    pg_cluster.start()
    restarted = time.monotonic()
    wait_until(lambda: call(f"{api}/health").body["status"] == "ok", 15, "health to heal")
    report("db_outage_health_heal_s", time.monotonic() - restarted)
    reply = call(f"{api}/broadcast", "POST", server.token, risk("after"))
    assert reply.status == 201, reply.body
    found = call(f"{api}/query", token=server.token).body
    assert sorted(i["subject"] for i in found["results"]) == ["after", "before"]


@pytest.fixture
def fast_heartbeat_server(pg_db):
    env = service_env(DATABASE_URL=pg_db, KE_WS_HEARTBEAT_SECONDS="0.5")
    token = create_worker("think", env)
    proc = ProjectProcess.daphne(spare_port(), env).start().wait_listening()
    proc.token = token
    yield proc
    proc.cleanup()


def test_live_socket_stays_up_through_a_database_outage_and_the_feed_resumes(
    fast_heartbeat_server, pg_cluster
):
    server = fast_heartbeat_server
    api = f"{server.url}/api/knowledge"
    feed = FeedSocket(server.url, server.token)
    try:
        feed.send({"action": "subscribe", "since": 0})
        feed.next("subscribed")
        call(f"{api}/broadcast", "POST", server.token, risk("before"))
        feed.next("event", where=lambda f: f["data"]["item"]["subject"] == "before")

        pg_cluster.stop()
        degraded = feed.next("heartbeat", where=lambda f: f.get("degraded") is True)
        assert degraded["top"] >= 1

        pg_cluster.start()
        restarted = time.monotonic()
        wait_until(lambda: call(f"{api}/health").body["status"] == "ok", 15, "health to heal")
        assert call(f"{api}/broadcast", "POST", server.token, risk("after")).status == 201
        event = feed.next("event", where=lambda f: f["data"]["item"]["subject"] == "after")
        report("db_outage_socket_heal_s", time.monotonic() - restarted)
        feed.next("heartbeat", where=lambda f: not f.get("degraded"))
    finally:
        feed.close()
    subjects = [f["data"]["item"]["subject"] for f in feed.frames if f["type"] == "event"]
    assert subjects == ["before", "after"]  # nothing lost, nothing twice
    assert event["seq"] > degraded["top"]
