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

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from config.product import product_settings
from knowledge import daphne_transport, live_auth
from knowledge.choices import EventKind
from knowledge.events import FeedFilter
from knowledge.registry import registry
from knowledge.relay import (
    CLOSE_GOING_AWAY,
    Connection,
    Relay,
    db_position,
    standing_filter,
)
from knowledge.resume import resume

log = logging.getLogger(__name__)

CLOSE_AUTH = 4401
CLOSE_TOO_SLOW = 4008
CLOSE_DISABLED = 4503  # the feed is disabled, or this server process is stopping
FILTER_KEYS = ("types", "sources", "events")


_viewer = database_sync_to_async(live_auth.socket_viewer)


class KnowledgeConsumer(AsyncWebsocketConsumer):
    # No channel-layer channel per socket: the relay delivers (one wake subscription per
    # process) and nothing ever sends to a socket's channel name. With the Redis pub/sub
    # layer each socket otherwise costs a SUBSCRIBE on connect, an UNSUBSCRIBE on
    # disconnect (both under the layer's one lock) and a receive task while it lives
    # (docs/performance.md, "10,000 connections"). An alias that is not configured gives
    # ``channel_layer = None`` (channels.layers.get_channel_layer).
    channel_layer_alias = "ke-no-layer"

    async def connect(self):
        self.conn: Connection | None = None
        self._catchup: asyncio.Task | None = None
        if not product_settings().websocket_enabled:
            await self.accept()
            await self.close(code=CLOSE_DISABLED)
            return
        who = await _viewer(self.scope)
        if who is None:
            await self.accept()
            await self.close(code=CLOSE_AUTH)
            return
        self.read_types = who.read_types
        await self.accept()
        self.relay = Relay.current()
        if self.relay.draining:
            await self.close(code=CLOSE_GOING_AWAY)
            return
        self.conn = Connection(
            label=who.label,
            viewer=who.worker,
            max_queue=product_settings().ws_max_queue,
            on_overflow=self._too_slow,
            credential=who.credential,
            on_close=self._ended_by_relay,
            send=self._send_text,
        )
        self.watch = daphne_transport.watch(self.base_send)
        self.conn.writer = self.watch.writer
        self.conn.can_write = self.watch.writable.is_set
        self.conn.paused_since = self.watch.paused
        self.watch.on_resume = functools.partial(self.relay.mark_dirty, self.conn)
        await self.relay.register(self.conn)

    async def disconnect(self, code):
        self._stop_tasks()
        if self.conn is not None:
            self.conn.writer = None
            self.relay.unregister(self.conn)
            self.watch.detach()
            self.conn = None

    def _stop_tasks(self):
        for task in (self._catchup,):
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()

    def _ended_by_relay(self, code: int):
        """Credentials revoked (4401/4403) or the server is stopping (4503)."""
        asyncio.get_running_loop().create_task(self._close_with(code))

    async def _close_with(self, code: int):
        if self.conn is None:
            return
        self._stop_tasks()
        await self.close(code=code)

    def _too_slow(self):
        self.relay.stats["slow_closes"] += 1
        log.info(
            "closing the socket of %s with 4008: it stopped reading (%d frames waiting)",
            self.conn.label if self.conn else "?",
            len(self.conn.queue) if self.conn else 0,
        )
        asyncio.get_running_loop().create_task(self._close_slow())

    async def _close_slow(self):
        if self.conn is None:
            return
        self.conn.dropped_slow = True
        await self._close_with(CLOSE_TOO_SLOW)

    async def _send_text(self, text: str) -> None:
        """The plain Channels send; the relay's sender calls it (knowledge/relay.py)."""
        await self.send(text_data=text)

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
            if since is not None and (
                isinstance(since, bool) or not isinstance(since, int) or since < 0
            ):
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
        # Live only: the relay's view of the log is the top (no read per socket: 10,000
        # sockets subscribing used to make 10,000 reads of the log's position).
        pos = self.relay.live_position() if since is None else None
        if pos is None:
            pos = await db_position()
        if conn.gen != gen or self.conn is None:
            return  # superseded while we read
        answer = resume(since, epoch, pos)
        conn.filter = flt
        conn.pos = answer.position
        conn.push(
            json.dumps(
                {
                    "type": "subscribed",
                    "epoch": pos.epoch,
                    "since": since,
                    "recovered": answer.recovered,
                    "position": answer.position,
                    "top": pos.top,
                }
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
