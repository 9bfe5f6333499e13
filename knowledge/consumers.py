"""WebSocket feed at /ws/knowledge/ (protocol: docs/realtime.md, DESIGN.md section 7).

Each connection owns a bounded queue of encoded frames filled by the process's relay
(knowledge/relay.py) and drained by one sender task. A client that cannot keep up (its
queue overflows, or the socket stays unwritable for ``ws_stall_seconds``) is closed with
4008 and resumes with ``since``; nothing is lost because the log is the truth.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from config.product import product_settings
from knowledge.choices import EventKind
from knowledge.events import FeedFilter, is_recoverable
from knowledge.registry import registry
from knowledge.relay import Connection, Relay, db_position, standing_filter, text_frame
from knowledge.scopes import read_types

log = logging.getLogger(__name__)

CLOSE_AUTH = 4401
CLOSE_TOO_SLOW = 4008
CLOSE_DISABLED = 4503
FILTER_KEYS = ("types", "sources", "events")


@database_sync_to_async
def _authenticate(scope) -> tuple[str, str | None, frozenset | None] | None:
    """(label, viewer, read scope) for a worker token or a staff session; None if neither."""
    from identity.models import Worker

    token = parse_qs(scope.get("query_string", b"").decode(errors="replace")).get("token", [""])[0]
    if token:
        worker = Worker.objects.for_token(token)
        return (f"worker:{worker.name}", worker.name, read_types(worker)) if worker else None
    user = scope.get("user")
    if user is not None and user.is_authenticated and user.is_staff:
        return (f"user:{user.get_username()}", None, None)
    return None


class _WritableWatch:
    """Twisted push-producer on daphne's transport: paused while its buffer is full.

    Daphne never applies back-pressure to ``send``; without this, a stalled client would
    grow the transport buffer without bound. Outside daphne (tests) it is always writable.
    """

    def __init__(self):
        self.writable = asyncio.Event()
        self.writable.set()
        self.paused_since: float | None = None
        self.transport = None
        self.writer = None
        self.chained = None

    def attach(self, send) -> None:
        # Under daphne, ``send`` is partial(server.handle_reply, protocol), possibly wrapped
        # by Channels' session middleware (which keeps the inner one as ``real_send``).
        for _ in range(5):
            if isinstance(send, functools.partial):
                break
            send = getattr(getattr(send, "__self__", None), "real_send", None)
        if not isinstance(send, functools.partial):
            return
        protocol = (send.args or (None,))[0]
        server = getattr(getattr(send, "func", None), "__self__", None)
        transport = getattr(protocol, "transport", None)
        if transport is None or not hasattr(transport, "registerProducer"):
            return
        try:
            # Cap the kernel's send buffer too (autotuning lets it grow to megabytes), so a
            # stalled client is noticed after ~100 KiB, not after 4 MiB per connection.
            sndbuf = product_settings().ws_socket_sndbuf
            if sndbuf:
                transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        except Exception:
            log.debug("could not set SO_SNDBUF", exc_info=True)
        try:
            # Daphne's HTTPChannel (the upgraded HTTP connection) is registered already; we
            # take its place and pass pause/resume on to it.
            self.chained = getattr(transport, "producer", None)
            if self.chained is not None:
                transport.unregisterProducer()
            transport.registerProducer(self, True)
            self.transport = transport
        except Exception:  # fall back to the queue bound alone
            log.warning("could not register a producer on the transport", exc_info=True)
            return
        connections = getattr(server, "connections", None)
        if hasattr(protocol, "handle_reply") and isinstance(connections, dict):

            raw_socket = getattr(transport, "socket", None)  # plain TCP (not TLS)
            fast = raw_socket is not None and hasattr(transport, "_tempDataBuffer")

            def write(frame: bytes) -> None:
                # The frame goes to the transport as is: daphne never fragments or
                # compresses, so this is what autobahn would write, without its per-frame
                # Python work. Only while the socket is open and nothing is queued.
                details = connections.get(protocol)
                if details is None or details.get("disconnected") or protocol.state != protocol.STATE_OPEN:
                    raise ConnectionError("socket gone")
                if fast and not transport._tempDataBuffer and transport.offset >= len(transport.dataBuffer):
                    # Nothing buffered in Twisted: one send() instead of registering the
                    # socket for writability, waking up, writing and unregistering.
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

            self.writer = write

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

    def stopProducing(self):  # noqa: N802
        self.writable.set()
        if self.chained is not None:
            self.chained.stopProducing()


class KnowledgeConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.conn: Connection | None = None
        self._sender: asyncio.Task | None = None
        self._catchup: asyncio.Task | None = None
        if not product_settings().websocket_enabled:
            await self.accept()
            await self.close(code=CLOSE_DISABLED)
            return
        who = await _authenticate(self.scope)
        if who is None:
            await self.accept()
            await self.close(code=CLOSE_AUTH)
            return
        label, viewer, self.read_types = who
        await self.accept()
        self.relay = Relay.current()
        self.conn = Connection(
            label=label,
            viewer=viewer,
            max_queue=product_settings().ws_max_queue,
            on_overflow=self._too_slow,
        )
        self.watch = _WritableWatch()
        self.watch.attach(self.base_send)
        if self.watch.writer is not None and product_settings().ws_direct_write:
            self.conn.writer = self.watch.writer
            self.conn.can_write = self.watch.writable.is_set
        await self.relay.register(self.conn)
        self._sender = asyncio.get_running_loop().create_task(self._send_loop())

    async def disconnect(self, code):
        self._stop_tasks()
        if self.conn is not None:
            self.conn.writer = None
            self.relay.unregister(self.conn)
            self.watch.detach()
            self.conn = None

    def _stop_tasks(self):
        for task in (self._sender, self._catchup):
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()

    def _too_slow(self):
        self.relay.stats["slow_closes"] += 1
        asyncio.get_running_loop().create_task(self._close_slow())

    async def _close_slow(self):
        if self.conn is None:
            return
        self.conn.dropped_slow = True
        self._stop_tasks()
        await self.close(code=CLOSE_TOO_SLOW)

    async def _send_loop(self):
        conn = self.conn
        stall = product_settings().ws_stall_seconds
        while True:
            await conn.ready.wait()
            conn.ready.clear()
            while conn.queue:
                if not self.watch.writable.is_set():
                    try:
                        await asyncio.wait_for(self.watch.writable.wait(), stall)
                    except TimeoutError:
                        self._too_slow()
                        return
                text = conn.queue.popleft()
                if conn.writer is not None:
                    # Same path as the relay's direct writes, so frames never overtake.
                    try:
                        conn.writer(text_frame(text))
                        conn.sent += 1
                        continue
                    except Exception:
                        conn.writer = None
                await self.send(text_data=text)
                conn.sent += 1

    # client -> server --------------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        if self.conn is None:
            return
        try:
            msg = json.loads(text_data or "")
        except ValueError:
            return self._error("message is not JSON")
        if not isinstance(msg, dict):
            return self._error("message must be a JSON object")
        action = msg.get("action")
        if action == "subscribe":
            await self._subscribe(msg)
        elif action == "unsubscribe":
            self._unsubscribe()
            self.conn.push(json.dumps({"type": "unsubscribed"}))
        elif action == "ping":
            self.conn.push(json.dumps({"type": "pong", "top": self._top()}))
        else:
            self._error(f"unknown action: {action!r}")

    def _error(self, message: str):
        self.conn.push(json.dumps({"type": "error", "message": message}))

    def _top(self) -> int:
        return self.conn.pos if self.conn.filter is not None else self.relay.position

    def _unsubscribe(self):
        conn = self.conn
        conn.gen += 1
        conn.live = False
        conn.filter = None
        conn.queue.clear()
        if self._catchup is not None and not self._catchup.done():
            self._catchup.cancel()

    async def _subscribe(self, msg: dict):
        try:
            flt = self._parse_filter(msg)
            since = msg.get("since")
            if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
                raise ValueError("since: must be a non-negative integer or null")
            epoch = msg.get("epoch")
            if epoch is not None and not isinstance(epoch, str):
                raise ValueError("epoch: must be a string")
        except ValueError as exc:
            return self._error(str(exc))
        standing = msg.get("standing") is True
        if standing and self.conn.viewer is None:
            return self._error("standing: only workers have a standing subscription")
        self._unsubscribe()  # a subscribe replaces the whole subscription
        conn = self.conn
        gen = conn.gen
        if standing:
            flt = await standing_filter(conn.viewer)
        conn.standing = standing
        pos = await db_position()
        if conn.gen != gen or self.conn is None:
            return  # superseded while we read
        recovered = True
        if since is None:
            start = pos.top
        elif is_recoverable(since, epoch, pos):
            start = since
        else:
            recovered, start = False, pos.top
        conn.filter = flt
        conn.pos = start
        conn.push(
            json.dumps(
                {"type": "subscribed", "epoch": pos.epoch, "since": since, "recovered": recovered, "top": pos.top}
            )
        )
        self._catchup = asyncio.get_running_loop().create_task(self.relay.catch_up(conn, gen))

    def _parse_filter(self, msg: dict) -> FeedFilter:
        lists = {}
        for key in FILTER_KEYS:
            value = msg.get(key)
            if value is None:
                value = []
            elif isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{key}: must be a list of strings")
            lists[key] = value
        unknown = [t for t in lists["types"] if t not in registry]
        if unknown:
            raise ValueError(f"types: unknown knowledge type(s): {', '.join(unknown)}")
        bad = [k for k in lists["events"] if k not in EventKind.values]
        if bad:
            raise ValueError(f"events: unknown event kind(s): {', '.join(bad)}")
        return FeedFilter(
            kinds=frozenset(lists["events"]),
            types=frozenset(lists["types"]),
            sources=frozenset(lists["sources"]),
            viewer=self.conn.viewer,
            read_types=self.read_types,
        )
