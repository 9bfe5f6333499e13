"""Everything the live feed knows about daphne and Twisted internals, in one module.

ASGI gives a consumer no back-pressure: daphne's ``send`` never blocks, so a client that
stops reading would grow Twisted's write buffer without bound. Two things here reach under
ASGI, both only on a daphne/Twisted pair this code was checked against (``supported()``):

1. **Back-pressure** (``ws_backpressure``, on by default): a Twisted push producer
   (the public ``IPushProducer`` / ``registerProducer`` API) on the connection's transport,
   which is reached through daphne's ``send`` (a ``functools.partial`` of
   ``Server.handle_reply`` — daphne's, not a public API). Paused while the transport's
   buffer is full; the consumer closes a client that stays paused ``ws_stall_seconds`` with
   4008. The socket's ``SO_SNDBUF`` is capped (``ws_socket_sndbuf``) so a stall shows early.
   Without it (other server, other version) only the per-connection queue bound applies.
2. **Direct writes** (``ws_direct_write``, on by default, off when ``supported()`` fails): the relay builds each event's
   WebSocket frame once (RFC 6455, unmasked, unfragmented: what autobahn would write) and
   writes it to every subscriber's transport synchronously, with one ``send()`` on the raw
   socket when Twisted has nothing buffered (Twisted's private ``_tempDataBuffer`` /
   ``dataBuffer`` / ``offset``). No task switch and no autobahn per frame: the fastest
   fan-out measured here (docs/realtime.md, "Fan-out"), and the most fragile.

Outside daphne (tests with ``WebsocketCommunicator``, another ASGI server) ``watch`` returns
a watch that is always writable and has no writer: the plain Channels path.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from importlib.metadata import PackageNotFoundError, version

from config.product import product_settings

log = logging.getLogger(__name__)

# The versions whose internals were read and tested (bench/ws/bench.py, the test suite).
SUPPORTED = {"daphne": ("4.1.", "4.2."), "twisted": ("24.", "25.", "26.")}


@functools.cache
def supported() -> bool:
    """Are daphne and Twisted versions whose internals this module was checked against?"""
    try:
        found = {name: version(name) for name in SUPPORTED}
    except PackageNotFoundError:
        return False
    ok = all(found[name].startswith(prefixes) for name, prefixes in SUPPORTED.items())
    if not ok:
        log.warning(
            "daphne/Twisted %s not in %s: live feed uses the plain Channels path", found, SUPPORTED
        )
    return ok


def text_frame(text: str) -> bytes:
    """An unmasked, unfragmented WebSocket text frame (RFC 6455 5.2), as a server sends it."""
    data = text.encode()
    n = len(data)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 65536:
        header = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return header + data


class Watch:
    """Writability of one connection (always writable unless attached to daphne)."""

    def __init__(self):
        self.writable = asyncio.Event()
        self.writable.set()
        self.paused_since: float | None = None
        self.transport = None
        self.writer = None  # set only by the opt-in direct-write path
        self.chained = None
        self.on_resume = None  # callable: the connection may be written again

    def paused(self) -> float | None:
        """Since when the transport has been unwritable (monotonic), or None."""
        return self.paused_since

    def detach(self) -> None:
        if self.transport is not None:
            try:
                self.transport.unregisterProducer()
            except Exception:
                pass
            self.transport = None
        self.writer = None

    # IPushProducer
    def pauseProducing(self):  # noqa: N802
        self.writable.clear()
        self.paused_since = time.monotonic()
        if self.chained is not None:
            self.chained.pauseProducing()

    def resumeProducing(self):  # noqa: N802
        self.writable.set()
        self.paused_since = None
        if self.chained is not None:
            self.chained.resumeProducing()
        if self.on_resume is not None:
            self.on_resume()

    def stopProducing(self):  # noqa: N802
        self.writable.set()
        if self.chained is not None:
            self.chained.stopProducing()


def _daphne_parts(send):
    """(protocol, server, transport) behind daphne's ``send``, or None."""
    # ``send`` is partial(server.handle_reply, protocol), possibly wrapped by Channels'
    # session middleware (which keeps the inner one as ``real_send``).
    for _ in range(5):
        if isinstance(send, functools.partial):
            break
        send = getattr(getattr(send, "__self__", None), "real_send", None)
    if not isinstance(send, functools.partial):
        return None
    protocol = (send.args or (None,))[0]
    server = getattr(getattr(send, "func", None), "__self__", None)
    transport = getattr(protocol, "transport", None)
    if transport is None or not hasattr(transport, "registerProducer"):
        return None
    return protocol, server, transport


def deny(send, status: int, reason: str, retry_after: int) -> bool:
    """Refuse the handshake behind ``send`` with an HTTP ``status`` and ``Retry-After``;
    False when it cannot (not daphne, an unchecked version, the handshake is over).

    Daphne answers every refusal (``websocket.close`` before accept) with a headerless 403
    and does not offer ASGI's denial-response extension. This does what its
    ``serverReject`` does, with our status and header: autobahn's ``failHandshake`` writes
    the response and drops the connection. The handshake's deferred is forgotten unfired
    (daphne deletes it the same way), so autobahn's ``onConnect`` callbacks never run.
    """
    if not supported():
        return False
    parts = _daphne_parts(send)
    if parts is None:
        return False
    protocol, server, _transport = parts
    if (
        getattr(protocol, "handshake_deferred", None) is None
        or getattr(protocol, "state", None) != getattr(protocol, "STATE_CONNECTING", object())
        or not hasattr(protocol, "failHandshake")
        or not hasattr(server, "protocol_disconnected")
    ):
        return False
    del protocol.handshake_deferred
    server.protocol_disconnected(protocol)
    protocol.failHandshake(reason, status, [("Retry-After", str(retry_after))])
    return True


def watch(send) -> Watch:
    """A ``Watch`` for the connection behind ``send``; attached to daphne when allowed."""
    w = Watch()
    if not product_settings().ws_backpressure or not supported():
        return w
    parts = _daphne_parts(send)
    if parts is None:
        return w
    protocol, server, transport = parts
    try:
        sndbuf = product_settings().ws_socket_sndbuf
        if sndbuf:
            transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    except Exception:
        log.debug("could not set SO_SNDBUF", exc_info=True)
    try:
        # Daphne's HTTPChannel (the upgraded HTTP connection) is registered already; we
        # take its place and pass pause/resume on to it.
        w.chained = getattr(transport, "producer", None)
        if w.chained is not None:
            transport.unregisterProducer()
        transport.registerProducer(w, True)
        w.transport = transport
    except Exception:  # fall back to the queue bound alone
        log.warning("could not register a producer on the transport", exc_info=True)
        return w
    if product_settings().ws_direct_write:
        w.writer = _direct_writer(protocol, server, transport)
    return w


def _direct_writer(protocol, server, transport):
    connections = getattr(server, "connections", None)
    if not hasattr(protocol, "handle_reply") or not isinstance(connections, dict):
        return None
    raw_socket = getattr(transport, "socket", None)  # plain TCP (not TLS)
    fast = raw_socket is not None and hasattr(transport, "_tempDataBuffer")

    def write(frame: bytes) -> None:
        # Only while the socket is open and nothing is queued: daphne never fragments or
        # compresses, so this is what autobahn would write.
        details = connections.get(protocol)
        if details is None or details.get("disconnected") or protocol.state != protocol.STATE_OPEN:
            raise ConnectionError("socket gone")
        if fast and not transport._tempDataBuffer and transport.offset >= len(transport.dataBuffer):
            # Nothing buffered in Twisted: one send() instead of a writability round trip.
            try:
                sent = raw_socket.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # let Twisted find out about the broken socket
            if sent == len(frame):
                return
            frame = frame[sent:]
        transport.write(frame)

    return write
