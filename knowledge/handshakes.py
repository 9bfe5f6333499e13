"""A bound on WebSocket handshakes in progress per server process (docs/realtime.md,
"Handshake bound").

A handshake is *in progress* from the moment the socket reaches the application until the
application accepts or refuses it: the credential check, the read scope, the consumer's
setup. Under a reconnect storm (a restart, a network blip, 10,000 clients at once) the
handshakes used to pile up behind each other until they passed the server's handshake
timeout (daphne: 5 s), and the server went on spending its CPU on handshakes whose clients
had already given up: with 400 in flight not one completed (docs/performance.md,
"10,000 connections"). Refusing early keeps the ones admitted fast.

Over ``ws_handshakes_in_flight`` a new handshake is refused at once, before any of that
work, with a refusal the client can read:

- **HTTP 503** with ``Retry-After`` (the client's slot, below) before the upgrade, where the
  server can answer a handshake with a status: under daphne (``daphne_transport.deny``;
  daphne itself answers every refusal 403) and under any server offering ASGI's WebSocket
  Denial Response extension;
- otherwise, and for browsers (a page never sees the status of a failed handshake, only a
  close 1006), the socket is accepted and closed with **4013**, this feed's private twin of
  1013 "Try Again Later" (as 4008 is of 1008: autobahn, under daphne, sends only 1000 and
  3000-4999), with the reason ``retry after N s`` (daphne drops close reasons: clients take
  1 s, the default, when there is none).

Clients wait ``Retry-After`` plus a full-jitter backoff, so refused clients do not all come
back in the same second (``kx_sdk.backoff.retry_delay``, ``KnowledgeSocket.retryDelay``).
"""

from __future__ import annotations

import json
import math
import time

from config.product import product_settings
from knowledge import daphne_transport
from knowledge.relay import process_stats

CLOSE_TRY_AGAIN = 4013
DENIAL_EXTENSION = "websocket.http.response"
_ENDS_HANDSHAKE = frozenset(
    {"websocket.accept", "websocket.close", "websocket.http.response.start"}
)


class _CountingSend:
    """The application's ``send``: the first accept or refusal ends the handshake. Keeps the
    server's own ``send`` as ``real_send`` (daphne_transport finds the transport through it)."""

    __slots__ = ("real_send", "_done")

    def __init__(self, real_send, done):
        self.real_send = real_send
        self._done = done

    async def send(self, message):
        if message.get("type") in _ENDS_HANDSHAKE:
            self._done()
        await self.real_send(message)


class HandshakeGate:
    """ASGI middleware: at most ``ws_handshakes_in_flight`` socket handshakes in progress in
    this process (0: no bound); the next one is refused early (module docstring).

    Each refused client is given its own slot to come back in: the slots follow each other at
    the rate this process has been completing handshakes (``Retry-After`` = the slot, at
    least ``ws_handshake_retry_after``). Told "1 s" all at once, 10,000 refused clients came
    back together and the server spent its CPU refusing them again (a refusal costs the
    server nearly what an accepted handshake does: the HTTP parse and autobahn come first).
    """

    RATE_WINDOW = 5.0  # seconds of completed handshakes the rate is measured over

    def __init__(self, app):
        self.app = app
        self.in_progress = 0
        self._next_slot = 0.0
        self._window_start = time.monotonic()
        self._completed = 0
        self._rate = 0.0  # handshakes completed per second in the last full window

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        bound = product_settings().ws_handshakes_in_flight
        if bound and self.in_progress >= bound:
            process_stats["handshakes_refused"] += 1
            return await refuse(scope, receive, send, self.retry_after(bound))
        self.in_progress += 1
        counted = True

        def done():
            nonlocal counted
            if counted:
                counted = False
                self.in_progress -= 1
                self._completed += 1

        try:
            return await self.app(scope, receive, _CountingSend(send, done).send)
        finally:
            done()

    def retry_after(self, bound: int) -> int:
        """Seconds until the next free slot, which this refused client takes."""
        now = time.monotonic()
        if now - self._window_start >= self.RATE_WINDOW:
            self._rate = self._completed / (now - self._window_start)
            self._window_start, self._completed = now, 0
        # Before a window has been measured: assume the bound completes each second.
        rate = max(self._rate or float(bound), 1.0)
        self._next_slot = max(self._next_slot, now) + 1.0 / rate
        floor = product_settings().ws_handshake_retry_after
        return max(floor, math.ceil(self._next_slot - now))


async def refuse(scope, receive, send, retry_after: int) -> None:
    """Refuse one handshake as "try again in ``retry_after`` seconds"."""
    headers = dict(scope.get("headers") or ())
    if b"origin" not in headers:  # not a browser: it can read an HTTP status
        if DENIAL_EXTENSION in (scope.get("extensions") or {}):
            body = json.dumps(
                {
                    "detail": f"too many WebSocket handshakes in progress; "
                    f"retry after {retry_after} s",
                    "errors": {},
                }
            ).encode()
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": 503,
                    "headers": [
                        (b"retry-after", str(retry_after).encode()),
                        (b"content-type", b"application/json"),
                    ],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
            return
        if daphne_transport.deny(send, 503, "Service Unavailable", retry_after):
            return
    message = await receive()
    if message.get("type") != "websocket.connect":
        return  # the client left already
    await send({"type": "websocket.accept"})
    await send(
        {
            "type": "websocket.close",
            "code": CLOSE_TRY_AGAIN,
            "reason": f"retry after {retry_after} s",
        }
    )
