"""PostgreSQL stopped and started under a real daphne: fast 503s with Retry-After, health
says ``fail``, and everything heals without a restart."""

from __future__ import annotations

import pytest

from tests.faults.client import call, create_worker, risk
from tests.faults.services import ProjectProcess, service_env, spare_port, wait_until

pytestmark = pytest.mark.faults


@pytest.fixture
def server(pg_db):
    env = service_env(DATABASE_URL=pg_db)
    token = create_worker("think", env)
    proc = ProjectProcess.daphne(spare_port(56800, 56900), env).start().wait_listening()
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
        reply = call(f"{api}/{path}", method, server.token, body)
        assert reply.status == 503, (path, reply.status, reply.body)
        assert int(reply.headers["retry-after"]) > 0, path
        assert reply.headers["content-type"].startswith("application/json"), path
        assert reply.body["errors"] == {} and "database" in reply.body["detail"], path
    health = call(f"{api}/health")
    assert health.status == 503 and health.body["status"] == "fail"
    assert health.body["checks"]["database"]["ok"] is False

    pg_cluster.start()

    wait_until(lambda: call(f"{api}/health").body["status"] == "ok", 15, "health to heal")
    reply = call(f"{api}/broadcast", "POST", server.token, risk("after"))
    assert reply.status == 201, reply.body
    found = call(f"{api}/query", token=server.token).body
    assert sorted(i["subject"] for i in found["results"]) == ["after", "before"]
