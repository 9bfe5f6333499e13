"""A tiny HTTP client for fault tests (stdlib only): status, headers and JSON of a request."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass

from tests.faults.services import ROOT


@dataclass
class Reply:
    status: int
    headers: dict
    body: object


def call(
    url: str, method: str = "GET", token: str | None = None, body=None, timeout: float = 10
) -> Reply:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw, status, headers = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        raw, status, headers = exc.read(), exc.code, dict(exc.headers)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return Reply(status, {k.lower(): v for k, v in headers.items()}, parsed)


def create_worker(name: str, env: dict) -> str:
    """A worker identity made by the project's own command; returns its token."""
    out = subprocess.run(
        [sys.executable, "manage.py", "create_worker", name],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout.strip().splitlines()[-1]


def risk(subject: str, key: str | None = None) -> dict:
    body = {
        "knowledge_type": "risk_pattern",
        "confidence": 0.7,
        "payload": {"pattern": subject, "risk_level": "high"},
    }
    if key:
        body["idempotency_key"] = key
    return body


class FeedSocket:
    """A synchronous WebSocket client of the live feed that collects frames by type."""

    def __init__(self, base_url: str, token: str) -> None:
        from websockets.sync.client import connect

        ws_url = base_url.replace("http://", "ws://") + f"/ws/knowledge/?token={token}"
        self._connection = connect(ws_url, open_timeout=10, origin=base_url)
        self.ws = self._connection.__enter__()
        self.frames: list[dict] = []

    def send(self, message: dict) -> None:
        self.ws.send(json.dumps(message))

    def next(self, kind: str, timeout: float = 10, where=lambda f: True) -> dict:
        """The next frame of type ``kind`` (other frames are kept in ``frames``)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind} frame within {timeout}s; got {self.frames[-5:]}")
            try:
                frame = json.loads(self.ws.recv(timeout=remaining))
            except TimeoutError:
                continue
            self.frames.append(frame)
            if frame.get("type") == kind and where(frame):
                return frame

    def close(self) -> None:
        self._connection.__exit__(None, None, None)
