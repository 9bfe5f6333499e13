"""The JS client under Node against a real server (issue 15): a daphne process, a worker token,
and static/js/examples/node-client.js (the example in docs/realtime-client.md) run by `node`.
Needs `node` and static/js/node_modules (`make js-deps`, i.e. `npm ci` in static/js)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest

from knowledge.tests.daphne_server import DaphneServer

pytestmark = [pytest.mark.django_db(transaction=True)]

JS = Path(__file__).resolve().parents[1]
EXAMPLE = JS / "examples" / "node-client.js"
NODE = shutil.which("node")


@pytest.fixture
def server():
    srv = DaphneServer().start()
    yield srv
    srv.stop()


class NodeClient:
    """`node node-client.js`, its stdout read line by line on a thread."""

    def __init__(self, url: str, token: str, **env: str):
        if not (JS / "node_modules" / "ws").is_dir():
            pytest.fail(
                "static/js/node_modules is missing: run `make js-deps` (npm ci in static/js)"
            )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.proc = subprocess.Popen(
            [NODE, str(EXAMPLE)],
            cwd=JS,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "KX_URL": url, "KX_TOKEN": token, **env},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, prefix: str, timeout: float = 20) -> str:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line starting {prefix!r}; saw {self.seen}") from None
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def node_client():
    if NODE is None:
        pytest.skip("node is not installed")
    clients = []

    def start(*args, **env):
        c = NodeClient(*args, **env)
        clients.append(c)
        return c

    yield start
    for c in clients:
        c.stop()


def broadcast(url: str, token: str, pattern: str) -> int:
    body = {
        "knowledge_type": "risk_pattern",
        "payload": {"pattern": pattern, "risk_level": "low"},
        "confidence": 0.7,
    }
    req = urllib.request.Request(
        url + "/api/knowledge/broadcast",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)["item"]["id"]


def test_node_receives_a_broadcast_over_the_websocket_with_ws(server, think, node_client):
    client = node_client(server.url, think.token)
    assert client.wait_for("status live") == "status live ws"
    broadcast(server.url, think.token, "rule:node-ws")
    line = client.wait_for("event ")
    assert line.endswith(" knowledge_broadcast risk_pattern")
    assert not [s for s in client.seen if s.startswith("error")]


def test_node_polls_with_an_absolute_url_and_says_why(server, think, node_client):
    client = node_client(server.url, think.token, KX_POLL_ONLY="1")
    notice = client.wait_for("error fallback")
    assert "WebSocketImpl: require('ws')" in notice
    assert client.wait_for("status polling") == "status polling poll"
    broadcast(server.url, think.token, "rule:node-poll")
    assert client.wait_for("event ").endswith(" knowledge_broadcast risk_pattern")
    assert not [s for s in client.seen if s.startswith("error poll")]  # no "Failed to parse URL"


def test_the_docs_show_the_node_example_verbatim():
    doc = (JS.parents[1] / "docs" / "realtime-client.md").read_text()
    assert "```js\n" + EXAMPLE.read_text() + "```" in doc
