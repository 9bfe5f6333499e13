"""The HTTP transport: retries with idempotency keys, and the docs' example against a live server."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from identity.actions import do_create_worker
from identity.models import Worker
from knowledge.models import KnowledgeItem
from kx_sdk import HttpTransport, SDKError, TransportError


class FlakyHandler(BaseHTTPRequestHandler):
    """Answers 503, then 429, then 201; records what it was sent."""

    seen: list[dict] = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FlakyHandler.seen.append({"auth": self.headers["Authorization"], **body})
        attempt = len(FlakyHandler.seen)
        if attempt == 1:
            self.send_response(503)
            self.end_headers()
            return
        if attempt == 2:
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.end_headers()
            return
        if body.get("payload", {}).get("bad"):
            data = json.dumps(
                {"detail": "invalid", "errors": {"payload.rule": ["required"]}}
            ).encode()
            self.send_response(400)
        else:
            data = json.dumps(
                {
                    "item": {"id": 7, "subject": "s"},
                    "outcome": "created",
                    "conflicts": [],
                    "replayed": False,
                }
            ).encode()
            self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def flaky_server():
    FlakyHandler.seen = []
    server = HTTPServer(("127.0.0.1", 0), FlakyHandler)  # a free port the OS picks
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_retries_reuse_the_idempotency_key(flaky_server):
    from kx_sdk import BaseWorker

    waits: list[float] = []
    transport = HttpTransport(flaky_server, "kx_t", worker="scout", sleep=waits.append)
    result = BaseWorker(transport).broadcast(
        "risk_pattern", {"pattern": "p", "risk_level": "low"}, 0.5
    )
    assert result["item"]["id"] == 7
    assert len(FlakyHandler.seen) == 3 and transport.retries_done == 2
    keys = {s["idempotency_key"] for s in FlakyHandler.seen}
    assert len(keys) == 1 and keys.pop().startswith("scout:")
    assert {s["auth"] for s in FlakyHandler.seen} == {"Token kx_t"}
    assert waits[0] > 0 and waits[1] == 0  # backoff, then the server's Retry-After


def test_a_4xx_is_raised_at_once_with_the_field(flaky_server):
    FlakyHandler.seen = [{}, {}]  # past the flaky answers
    transport = HttpTransport(flaky_server, "kx_t", worker="scout", sleep=lambda s: None)
    with pytest.raises(SDKError) as exc:
        transport.broadcast(
            {"knowledge_type": "risk_pattern", "payload": {"bad": 1}, "confidence": 1}
        )
    assert exc.value.status == 400 and exc.value.field == "payload.rule"
    assert transport.retries_done == 0


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_fails_after_the_retries():
    waits: list[float] = []
    transport = HttpTransport.__new__(HttpTransport)
    HttpTransport.__init__(
        transport,
        f"http://127.0.0.1:{closed_port()}",
        "kx_t",
        worker="scout",
        retries=3,
        sleep=waits.append,
    )
    with pytest.raises(TransportError, match="receive/scout"):
        transport.receive()
    assert len(waits) == 3 and waits == sorted(waits)  # exponential backoff


# --- the docs' example against a live server ------------------------------------------------------


def example_source() -> str:
    text = (Path(settings.BASE_DIR) / "docs" / "workers.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    return next(b for b in blocks if "class RiskWatch" in b)


def server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLITE_PATH")}
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        env["SQLITE_PATH"] = db["NAME"]
    else:
        auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        env["DATABASE_URL"] = (
            f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    return env


@pytest.fixture
def live_server_process():
    from knowledge.tests.daphne_server import free_port

    port = free_port()  # not a fixed one: another checkout's tests may run at the same time
    daphne = Path(sys.executable).with_name("daphne")
    proc = subprocess.Popen(
        [str(daphne), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=settings.BASE_DIR,
        env=server_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.1)
    assert proc.poll() is None, "our daphne exited: the port answered for another server"
    yield f"http://127.0.0.1:{port}"
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.django_db(transaction=True)
def test_the_docs_example_runs_against_a_live_server_with_only_the_sdk(
    live_server_process, think, tmp_path
):
    _, token = do_create_worker("risk-watch")
    think.broadcast("risk_pattern", {"pattern": "rule:a", "risk_level": "high"}, 0.8)
    think.broadcast("risk_pattern", {"pattern": "rule:b", "risk_level": "critical"}, 0.7)
    think.broadcast("risk_pattern", {"pattern": "rule:c", "risk_level": "low"}, 0.9)
    # Only the SDK package and the standard library: no Django, no project on the path.
    shutil.copytree(Path(settings.BASE_DIR) / "kx_sdk", tmp_path / "lib" / "kx_sdk")
    script = tmp_path / "risk_watch.py"
    script.write_text(example_source())
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(tmp_path / "lib"),
        "KE_URL": live_server_process,
        "KE_TOKEN": token,
        "KE_CYCLES": "2",
    }
    done = subprocess.run(
        [sys.executable, "-S", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "2 cycles, 3 received, 2 broadcast" in done.stderr
    item = KnowledgeItem.objects.get(source__name="risk-watch", status="active")
    assert item.payload["samples"] == 2 and item.payload["risk_level"] == "low"
    state = Worker.objects.get(name="risk-watch").state
    assert (
        state["status"] == "stopped"
        and state["high_risks"] == 2
        and state["stats"]["received"] == 3
    )


@pytest.mark.django_db(transaction=True)
def test_a_builtin_worker_runs_over_http(live_server_process, history_repo):
    from io import StringIO

    from django.core.management import call_command

    _, token = do_create_worker("analysis")
    out = StringIO()
    call_command(
        "run_worker",
        "analysis",
        "--repo",
        str(history_repo.path),
        "--once",
        "--transport",
        "http",
        "--url",
        live_server_process,
        "--token",
        token,
        stdout=out,
    )
    assert "analysis: 1 cycles" in out.getvalue() and "0 errors" in out.getvalue()
    issues = KnowledgeItem.objects.filter(source__name="analysis", knowledge_type="issue_pattern")
    assert issues.count() > 10
    head = history_repo.git("rev-parse", "HEAD")
    assert all(i.payload["commit"] == head for i in issues)
    assert Worker.objects.get(name="analysis").state["commit"] == head
