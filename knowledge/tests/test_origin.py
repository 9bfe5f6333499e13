"""The socket route checks Origin (issue 10, finding 3: cross-site WebSocket hijacking).

Before: a page on another port of the same host opened the feed with a logged-in staff
member's cookie. Now a handshake with a foreign Origin is refused before any consumer runs;
same-origin pages and clients that send no Origin (workers, the SDK) still connect.
"""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from config.asgi import application
from knowledge.tests.live_clients import staff_session
from knowledge.tests.test_consumers import _close_async_db_connections  # noqa: F401 (autouse)


async def staff_cookie() -> bytes:
    _client, key = await staff_session("alice")
    return f"sessionid={key}".encode()


pytestmark = [pytest.mark.django_db(transaction=True)]


async def handshake(path: str, headers) -> tuple[bool, dict | None]:
    comm = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await comm.connect(timeout=5)
    if not connected:
        return False, None
    await comm.send_json_to({"action": "subscribe", "since": None})
    reply = await comm.receive_json_from(timeout=5)
    await comm.disconnect()
    return True, reply


async def test_staff_session_from_a_foreign_origin_is_refused(db):
    cookie = await staff_cookie()
    host = (b"host", b"127.0.0.1:8000")
    for origin in (b"http://127.0.0.1:9999", b"http://evil.example", b"null"):
        ok, _ = await handshake("/ws/knowledge/", [host, (b"origin", origin), (b"cookie", cookie)])
        assert not ok, origin
    ok, reply = await handshake(
        "/ws/knowledge/", [host, (b"origin", b"http://127.0.0.1:8000"), (b"cookie", cookie)]
    )
    assert ok and reply["type"] == "subscribed"


async def test_trusted_origins_setting_admits_another_origin(db):
    cookie = await staff_cookie()
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"origin", b"https://ops.example"),
        (b"cookie", cookie),
    ]
    with override_settings(CSRF_TRUSTED_ORIGINS=["https://ops.example"]):
        ok, _ = await handshake("/ws/knowledge/", headers)
    assert ok


async def test_a_host_outside_allowed_hosts_is_refused_even_same_origin(db):
    cookie = await staff_cookie()
    headers = [(b"host", b"evil.example"), (b"origin", b"http://evil.example"), (b"cookie", cookie)]
    ok, _ = await handshake("/ws/knowledge/", headers)
    assert not ok


async def test_worker_token_without_origin_still_connects(think):
    ok, reply = await handshake(
        f"/ws/knowledge/?token={think.token}", [(b"host", b"127.0.0.1:8000")]
    )
    assert ok and reply["type"] == "subscribed"
