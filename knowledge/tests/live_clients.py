"""Small helpers shared by the live-feed tests that talk to a real server or session."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client
from websockets.exceptions import ConnectionClosed


@database_sync_to_async
def staff_session(name: str) -> tuple[Client, str]:
    """A logged-in staff person: (their client, their session key)."""
    user = get_user_model().objects.create_user(name, f"{name}@x.org", "pw-123456", is_staff=True)
    client = Client()
    client.force_login(user)
    return client, client.cookies["sessionid"].value


async def close_code(ws) -> int | None:
    """Read a `websockets` connection until the server closes it; the close code."""
    try:
        while True:
            await ws.recv()
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


def long_poll(url: str, token: str, wait: float = 25) -> tuple[int, dict]:
    """GET events?wait= with a worker token: (status, body)."""
    req = urllib.request.Request(
        f"{url}/api/knowledge/events?wait={wait}", headers={"Authorization": f"Token {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=wait + 15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
