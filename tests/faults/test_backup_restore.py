"""Backup and restore end to end, on both backends, under a running server: after the restore
the log has a new epoch, live sockets, ``GET events`` and inboxes say ``recovered: false``,
and keyed retries apply nothing twice."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.faults.client import FeedSocket, call, create_worker, risk
from tests.faults.figures import report
from tests.faults.services import ROOT, ProjectProcess, service_env, spare_port

pytestmark = pytest.mark.faults


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_env(request, tmp_path):
    if request.param == "postgresql":
        return service_env(DATABASE_URL=request.getfixturevalue("pg_db"))
    env = service_env(SQLITE_PATH=str(tmp_path / "kx.sqlite3"))
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )
    return env


def manage(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_restore_starts_a_new_epoch_and_nothing_applies_twice(backend_env, tmp_path):
    env = backend_env
    think, learning = create_worker("think", env), create_worker("learning", env)
    server = ProjectProcess.daphne(spare_port(), env).start().wait_listening()
    api = f"{server.url}/api/knowledge"
    try:
        a = call(f"{api}/broadcast", "POST", think, risk("kept", key="k-a"))
        assert a.status == 201
        inbox = call(f"{api}/receive/learning", token=learning).body
        assert (
            call(f"{api}/receive/learning/ack", "POST", learning, {"seq": inbox["ack"]}).status
            == 200
        )
        backup = tmp_path / "kx.backup"
        assert "backup written" in manage(env, "backup", str(backup))

        b = call(f"{api}/broadcast", "POST", think, risk("lost", key="k-b"))
        assert b.status == 201
        inbox = call(f"{api}/receive/learning", token=learning).body
        call(f"{api}/receive/learning/ack", "POST", learning, {"seq": inbox["ack"]})
        feed = FeedSocket(server.url, learning)
        feed.send({"action": "subscribe", "since": 0})
        old_epoch = feed.next("subscribed")["epoch"]
        last = feed.next("event", where=lambda f: f["data"]["item"]["subject"] == "lost")["seq"]

        manage(env, "restore", str(backup), "--yes")
        restored = time.monotonic()
        told = feed.next("subscribed", timeout=15)
        report(
            f"restore_socket_told_s[{env.get('DATABASE_URL') and 'postgresql' or 'sqlite'}]",
            time.monotonic() - restored,
        )
        assert told["recovered"] is False and told["epoch"] != old_epoch
        events = call(f"{api}/events?since={last}&epoch={old_epoch}", token=learning).body
        assert events["recovered"] is False and events["epoch"] == told["epoch"]
        inbox = call(f"{api}/receive/learning", token=learning).body
        assert inbox["recovered"] is False and inbox["results"] == []  # "kept" not redelivered

        retry_a = call(f"{api}/broadcast", "POST", think, risk("kept", key="k-a"))
        assert retry_a.status == 200 and retry_a.body["item"]["id"] == a.body["item"]["id"]
        retry_b = call(f"{api}/broadcast", "POST", think, risk("lost", key="k-b"))
        assert retry_b.status == 201  # the restore lost it: applied once more, once
        again_b = call(f"{api}/broadcast", "POST", think, risk("lost", key="k-b"))
        assert again_b.status == 200 and again_b.body["item"]["id"] == retry_b.body["item"]["id"]
        items = call(f"{api}/query", token=learning).body["results"]
        assert sorted(i["subject"] for i in items) == ["kept", "lost"]

        fresh = feed.next("event", where=lambda f: f["data"]["item"]["subject"] == "lost")
        assert fresh["epoch"] == told["epoch"] and fresh["seq"] > last  # no seq is reused
        # Resuming from what the socket was told is a clean resume, not a second reset.
        resumed = call(f"{api}/events?since={told['top']}&epoch={told['epoch']}", token=learning)
        assert resumed.body["recovered"] is True
        assert [m["seq"] for m in resumed.body["results"]] == [fresh["seq"]]
        feed.close()
    finally:
        server.cleanup()
