"""Run the real server (daphne) as a subprocess against the test database, for tests that
need a real socket: kill -9 and restart, two processes on one Redis, the browser."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    # A port the kernel picks, not the first free one of a fixed range: checkouts running
    # their suites at once picked the same port, and a client whose own daphne could not bind
    # talked to another checkout's server (another database: "invalid token").
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_database_env() -> dict:
    """Point a subprocess at the database the running test uses."""
    db = settings.DATABASES["default"]
    if settings.IS_POSTGRES:
        user = db.get("USER") or ""
        auth = user + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        url = f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
        return {"DATABASE_URL": url}
    return {"SQLITE_PATH": str(db["NAME"]), "DATABASE_URL": ""}


class DaphneServer:
    def __init__(self, port: int | None = None, daphne_args: tuple[str, ...] = (), **env: str):
        self.port = port or free_port()
        self.daphne_args = daphne_args
        self.env = {
            **os.environ,
            **test_database_env(),
            "KE_INSTANCE": settings.INSTANCE,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        if not settings.REDIS_URL:
            self.env.pop("REDIS_URL", None)
        self.proc: subprocess.Popen | None = None
        self.log_path = ROOT / f".daphne-test-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> DaphneServer:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                *self.daphne_args,
                "config.asgi:application",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("daphne did not start")

    def kill(self) -> None:
        """kill -9: no goodbye to any client."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.log_path.exists():
            self.log_path.unlink()


def post_broadcast(url: str, token: str, i: int) -> int:
    """Broadcast issue ``m.py::f<i>`` over HTTP to the server at ``url``; the new item's id."""
    body = json.dumps(
        {
            "knowledge_type": "issue_pattern",
            "confidence": 0.7,
            "payload": {"rule": "long_function", "location": f"m.py::f{i}", "severity": "high"},
        }
    ).encode()
    req = urllib.request.Request(
        f"{url}/api/knowledge/broadcast",
        data=body,
        method="POST",
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["item"]["id"]
