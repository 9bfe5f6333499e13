"""The per-process relay: the event log, read once per process, fanned out in memory.

One ``Relay`` per event loop (a daphne process has one) reads committed events in seq order
with ``read_events`` and hands each to every caught-up connection of this process whose
filter matches, through a bounded per-connection queue. The log is the truth; the channel
layer only wakes relays:

- a commit in this process wakes the relay directly (``add_wake_hook``);
- a commit in another process publishes one tiny wake message on the Redis pub/sub channel
  layer (when ``REDIS_URL`` is set); each process holds ONE layer subscription;
- and whatever the layer does (Redis restarting, no Redis at all in embedded mode), every
  relay also polls ``MAX(seq)`` every ``RELAY_POLL_INTERVAL`` seconds, so delivery across
  processes never depends on the layer.

A connection that is behind (it subscribed with an old ``since``) catches up by reading the
log itself with its own filter, then joins the relay's stream; the hand-over is race-free
because both run on the same event loop and the check "am I caught up" has no ``await``.

Connection tracking (who is connected, since when, with which filters) lives in memory here
and is mirrored into the cache every few seconds per process so ``GET stats``, ``/metrics``
and the dashboard can show every process (see docs/realtime.md, "Connection tracking").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import signal
import socket
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections

from config.product import product_settings
from knowledge import daphne_transport, live_auth, wakeup
from knowledge import events as event_log
from knowledge.events import (
    EventFilter,
    FeedFilter,
    LogPosition,
    log_bounds,
    log_position,
    read_events,
)

log = logging.getLogger(__name__)

# The server is stopping: reconnect (to another process) with backoff. Not 1001: autobahn,
# under daphne, lets a server close only with 1000 or 3000-4999.
CLOSE_GOING_AWAY = 4503
CACHE_PREFIX = "ke-ws-proc:"
CACHE_INDEX = "ke-ws-procs"
# Snapshot ordering: seconds between reads while committed events wait above the log's
# horizon (an older publishing transaction is still open; its commit wakes us too).
BEHIND_POLL = 0.02


def process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _AllEvents(EventFilter):
    """The relay reads everything (a person's view); connections filter in memory."""

    viewer = None


ALL = _AllEvents()


# --- DB access off the event loop ------------------------------------------------------------

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _db_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=product_settings().relay_db_threads, thread_name_prefix="ke-relay-db"
            )
        return _executor


def _in_db_thread(fn, *args):
    _PROCESS_STATS["db_reads"] += 1

    def run():
        close_old_connections()
        try:
            return fn(*args)
        finally:
            close_old_connections()

    return asyncio.get_running_loop().run_in_executor(_db_executor(), run)


def close_db_threads() -> None:
    """Close the DB connections of the relay's threads (when the relay goes idle).

    One task per thread, held at a barrier so that each thread runs exactly one.
    """
    if _executor is None:
        return
    n = _executor._max_workers
    barrier = threading.Barrier(n, timeout=2)

    def close():
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        from django.db import connections

        connections.close_all()

    for _ in range(n):
        _executor.submit(close)


async def db_read(since: int, flt: EventFilter, limit: int = 500):
    return await _in_db_thread(read_events, since, flt, limit)


async def db_position():
    return await _in_db_thread(log_position)


def _load_standing(worker_name: str):
    from identity.models import Worker
    from knowledge.actions import InboxFilter, get_subscription

    worker = Worker.objects.get(name=worker_name)
    return InboxFilter(worker, get_subscription(worker))


async def standing_filter(worker_name: str):
    """The worker's standing subscription (POST subscribe/unsubscribe) as a feed filter."""
    return await _in_db_thread(_load_standing, worker_name)


def _epoch_and_top() -> tuple[str, int, int, bool, int]:
    """(epoch, the log's horizon (``knowledge.events.log_bounds``), the log's top counting
    what was pruned or restored, whether committed events wait above the horizon, the prune
    horizon)."""
    from knowledge.models import LogState

    state = LogState.current()
    top, highest = log_bounds()
    return (
        str(state.epoch),
        top,
        max(top, state.pruned_through),
        highest > top,
        state.pruned_through,
    )


# --- Connections ------------------------------------------------------------------------------


@dataclass(eq=False)
class Connection:
    """One WebSocket's delivery state. ``queue`` holds encoded text frames, bounded."""

    label: str  # "worker:think" or "user:alice"
    viewer: str | None  # worker name, None for a person
    max_queue: int
    on_overflow: object = None  # callable, called once when the queue overflows or stalls
    connected_at: float = field(default_factory=time.time)
    queue: deque = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    filter: FeedFilter | None = None
    pos: int = 0  # everything matching up to pos is queued (or sent)
    live: bool = False  # caught up: the relay delivers to it
    gen: int = 0  # bumped by every (re)subscribe; stale catch-ups stop
    overflowed: bool = False
    sent: int = 0
    dropped_slow: bool = False
    standing: bool = False  # filter = the worker's standing subscription, refreshed
    # The opt-in daphne fast path (knowledge/daphne_transport.py): a synchronous write of a
    # pre-built frame while nothing is queued and the transport is writable.
    writer: object = None
    can_write: object = None
    credential: object = None  # live_auth.Credential, re-checked by the relay
    poll: bool = False  # a parked long poll (answered once), not a socket
    on_close: object = None  # callable(code): the relay ends this connection
    closed: int | None = None  # the code it was ended with
    send: object = None  # async callable(text): a socket's send (None for a long poll)
    paused_since: object = None  # callable: since when the socket has been unwritable
    notify: object = None  # callable(conn): something was queued (the relay's sender)

    def push(self, text: str, frame: bytes | None = None) -> bool:
        if self.overflowed:
            return False
        if self.writer is not None and not self.queue and self.can_write():
            try:
                self.writer(frame or daphne_transport.text_frame(text))
                self.sent += 1
                return True
            except Exception:
                log.debug("direct write failed; using the queue", exc_info=True)
                self.writer = None
        if len(self.queue) >= self.max_queue:
            self.overflowed = True
            self.live = False
            self.ready.set()
            if self.on_overflow:
                self.on_overflow()
            return False
        self.queue.append(text)
        self.ready.set()
        if self.notify is not None:
            self.notify(self)
        return True

    def heartbeat(self, fallback_top: int, degraded: bool = False) -> None:
        top = self.pos if self.filter is not None else fallback_top
        frame = {"type": "heartbeat", "top": top}
        if degraded:  # the log cannot be read (database outage); the socket stays up
            frame["degraded"] = True
        self.push(json.dumps(frame))

    def describe(self) -> dict:
        f = self.filter
        if self.standing:
            return {**self._base(), "filters": {"standing": True}}
        return {
            **self._base(),
            "filters": {
                "events": sorted(f.kinds) if f else [],
                "types": sorted(f.types) if f else [],
                "sources": sorted(f.sources) if f else [],
            },
        }

    def _base(self) -> dict:
        return {
            "who": self.label,
            "connected_at": self.connected_at,
            "subscribed": self.filter is not None,
            "live": self.live,
            "position": self.pos,
            "queued": len(self.queue),
            "sent": self.sent,
        }


def encode_event(event, epoch: str) -> str:
    return json.dumps(event.as_message(epoch), separators=(",", ":"), default=str)


# --- The relay --------------------------------------------------------------------------------

_relays: weakref.WeakSet = weakref.WeakSet()
_PROCESS_STATS = {
    "batches": 0,
    "events": 0,
    "delivered": 0,
    "slow_closes": 0,
    "wakes": 0,
    "handshakes_refused": 0,  # knowledge/handshakes.py
    "db_reads": 0,  # trips to the relay's database threads
}
#: This process's counters (mirrored with its connections; summed by ``connection_stats``).
process_stats = _PROCESS_STATS
_by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Relay:
    """Reads the log in order for one event loop and fans out to its connections."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.connections: set[Connection] = set()
        self.position = 0
        self.epoch = ""
        self.pruned_through = 0
        self._task: asyncio.Task | None = None
        self._wake_task: asyncio.Task | None = None
        self._guard_task: asyncio.Task | None = None
        self._send_task: asyncio.Task | None = None
        self._dirty: set[Connection] = set()
        self._send_wake = asyncio.Event()
        self.draining = False  # SIGTERM: answer and close everything, take nothing new
        self._wake = asyncio.Event()
        self._started = asyncio.Event()
        self.stats = _PROCESS_STATS  # survives the relay stopping when idle
        self.total_connections = 0
        self.degraded = False
        self.behind = False  # committed events wait above the log's horizon: poll again soon
        _relays.add(self)

    @classmethod
    def current(cls) -> Relay:
        loop = asyncio.get_running_loop()
        relay = _by_loop.get(loop)
        if relay is None:
            relay = _by_loop[loop] = cls(loop)
        return relay

    # lifecycle -------------------------------------------------------------------------------

    async def register(self, conn: Connection) -> None:
        if conn.send is not None:
            conn.notify = self.mark_dirty
        self.connections.add(conn)
        self.total_connections += 1
        if self._task is None or self._task.done():
            self._started = asyncio.Event()
            self._task = self.loop.create_task(self._run(), name="ke-relay")
            self._wake_task = self.loop.create_task(self._listen_layer(), name="ke-relay-wake")
            self._guard_task = self.loop.create_task(self._guard(), name="ke-relay-guard")
            self._send_task = self.loop.create_task(self._sender(), name="ke-relay-send")
            _chain_sigterm()
        await self._started.wait()

    def unregister(self, conn: Connection) -> None:
        self.connections.discard(conn)
        conn.live = False
        if not self.connections and not conn.poll:
            # A long poll is usually followed by the next one at once: the relay stays up
            # for it and stops in ``_run`` once idle for ``relay_idle_seconds``.
            self.stop()

    def stop(self) -> None:
        for task in (self._task, self._wake_task, self._guard_task, self._send_task):
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()
        self._task = self._wake_task = self._guard_task = self._send_task = None
        _publish_snapshot(self, final=True)
        close_db_threads()

    def end(self, conn: Connection, code: int) -> None:
        """End one connection from the server side: a socket is closed with ``code``, a long
        poll answers at once."""
        if conn.closed is not None:
            return
        conn.closed = code
        conn.live = False
        conn.ready.set()
        if conn.on_close is not None:
            conn.on_close(code)

    async def park(self, conn: Connection, timeout: float) -> None:
        """A long poll: wait on this process's fan-out (not the database) until an event for
        ``conn`` is queued, it is ended (revoked, shutdown) or ``timeout`` passes."""
        await self.register(conn)
        catch_up = self.loop.create_task(self.catch_up(conn, conn.gen))
        try:
            async with asyncio.timeout(timeout):
                while not conn.queue and conn.closed is None and not self.draining:
                    conn.ready.clear()
                    await conn.ready.wait()
        except TimeoutError:
            pass
        finally:
            catch_up.cancel()
            self.unregister(conn)

    def live_position(self) -> LogPosition | None:
        """The log as this relay last read it, for a live-only subscribe (``since`` null)
        that then needs no database read of its own: it starts at the relay's position
        (everything up to it was fanned out already, everything after reaches it through
        this relay). None while the relay has not read the log or cannot (an outage)."""
        if not self._started.is_set() or not self.epoch or self.degraded:
            return None
        return LogPosition(self.epoch, self.position, self.pruned_through)

    def mark_dirty(self, conn: Connection) -> None:
        """``conn`` has frames queued (or became writable again): the sender will send them."""
        self._dirty.add(conn)
        self._send_wake.set()

    async def _sender(self) -> None:
        """One sender for all the sockets of this process, not one task per socket: a fan-out
        of one event to N sockets wakes one task, not N. ASGI ``send`` under daphne does not
        block (it only writes to Twisted's buffer); writability comes from the daphne
        back-pressure watch, and a socket that stays unwritable is closed by ``_guard``."""
        while True:
            await self._send_wake.wait()
            self._send_wake.clear()
            while self._dirty:
                dirty, self._dirty = self._dirty, set()
                for conn in dirty:
                    await self._send_queued(conn)

    async def _send_queued(self, conn: Connection) -> None:
        while conn.queue and conn.closed is None and conn in self.connections:
            if not conn.can_write():
                return  # resumeProducing marks it dirty again
            text = conn.queue.popleft()
            if conn.writer is not None:  # the opt-in fast path: frames never overtake
                try:
                    conn.writer(daphne_transport.text_frame(text))
                    conn.sent += 1
                    continue
                except Exception:
                    conn.writer = None
            try:
                await conn.send(text)
            except Exception:  # the socket is going away; disconnect() cleans up
                log.debug("send failed", exc_info=True)
                return
            conn.sent += 1

    def _close_stalled(self) -> None:
        """Close (4008) sockets unwritable for ``ws_stall_seconds`` with frames waiting."""
        stall = product_settings().ws_stall_seconds
        now = time.monotonic()
        for conn in list(self.connections):
            since = conn.paused_since() if conn.paused_since is not None else None
            if since is not None and conn.queue and now - since > stall and not conn.overflowed:
                conn.overflowed = True
                conn.live = False
                if conn.on_overflow is not None:
                    conn.on_overflow()

    async def _guard(self) -> None:
        """Re-check every connection's credential (docs/realtime.md, "Revocation") and close
        stalled sockets."""
        every = product_settings().live_auth_recheck_seconds
        while True:
            await asyncio.sleep(every)
            self._close_stalled()
            creds = {c.credential for c in self.connections if c.credential and c.closed is None}

            if not creds:
                continue
            try:
                bad = await _in_db_thread(live_auth.revoked, creds)
            except Exception:  # database down: keep serving; the check runs again
                log.warning("credential re-check failed", exc_info=True)
                continue
            for conn in list(self.connections):
                if conn.credential in bad:
                    self.end(conn, bad[conn.credential])

    async def shutdown(self) -> None:
        """SIGTERM: answer every parked long poll, close every socket (4503), and return once
        the polls have left (bounded), so the server stops with nothing left hanging."""
        self.draining = True
        for conn in list(self.connections):
            self.end(conn, CLOSE_GOING_AWAY)
        try:
            async with asyncio.timeout(2):
                while any(c.poll for c in self.connections):
                    await asyncio.sleep(0.02)
        except TimeoutError:
            log.warning("shutdown: long polls still in flight")

    def wake(self) -> None:
        """Thread-safe: a commit happened somewhere."""
        try:
            self.loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # loop closed
            _relays.discard(self)

    # the loop --------------------------------------------------------------------------------

    async def _run(self) -> None:
        poll = product_settings().relay_poll_seconds(redis=bool(settings.REDIS_URL))
        heartbeat_every = product_settings().ws_heartbeat_seconds
        snapshot_every = 5.0
        try:
            pos = await db_position()
            self.position, self.epoch = pos.top, pos.epoch
            self.pruned_through = pos.pruned_through
        except Exception:
            log.exception("relay could not read the log position")
            self.position, self.epoch = 0, ""
        self._started.set()
        next_heartbeat = time.monotonic() + heartbeat_every
        next_snapshot = time.monotonic()
        standing_every = product_settings().ws_standing_refresh_seconds
        next_standing = time.monotonic() + standing_every
        idle_for = product_settings().relay_idle_seconds
        idle_since = None
        while True:
            try:
                # Not wait_for: on 3.11 it can swallow a cancellation that races the wake.
                async with asyncio.timeout(BEHIND_POLL if self.behind else poll):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if self.connections:
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > idle_for:
                self.stop()
                return
            try:
                await self._drain()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A database outage: keep sockets up on heartbeats that say so; retry.
                if not self.degraded:
                    log.warning("relay read failed (%s); retrying", type(exc).__name__)
                self.degraded = True
                await asyncio.sleep(poll)
            else:
                self.degraded = False
            now = time.monotonic()
            if now >= next_heartbeat:
                next_heartbeat = now + heartbeat_every
                for conn in list(self.connections):
                    if not conn.poll:
                        conn.heartbeat(self.position, self.degraded)
            if now >= next_snapshot:
                next_snapshot = now + snapshot_every
                _publish_snapshot(self)
            if now >= next_standing:
                next_standing = now + standing_every
                await self._refresh_standing()

    async def _drain(self) -> None:
        """Read from ``position`` to the top and fan out; repeat while there is more."""
        while True:
            epoch, top, log_top, self.behind, self.pruned_through = await _in_db_thread(
                _epoch_and_top
            )
            if self.epoch and epoch != self.epoch:
                self._new_epoch(epoch, log_top)  # a restore: tell every socket
            if top <= self.position:
                if top < self.position:
                    # The log was reset (new epoch): restart from its top; connections
                    # resubscribe when they see the new epoch.
                    self._reset_position(top, epoch)
                return
            events, scanned = await db_read(self.position, ALL, 1000)
            self._fan_out(events, scanned)
            if scanned >= top:
                return

    async def _refresh_standing(self) -> None:
        """Apply POST subscribe/unsubscribe to live feeds that follow the standing filter."""
        workers = {c.viewer for c in self.connections if c.standing and c.viewer}
        for name in workers:
            try:
                flt = await standing_filter(name)
            except Exception:
                continue
            for conn in self.connections:
                if conn.standing and conn.viewer == name and conn.filter is not None:
                    conn.filter = flt

    def _new_epoch(self, epoch: str, log_top: int) -> None:
        """The log was restored from a backup (or reset): every connection is told it cannot
        recover (``subscribed`` with ``recovered: false``, the new epoch and the log's top to
        resume from) and stays live; new events come after ``log_top``."""
        log.warning("event log epoch changed (%s -> %s)", self.epoch, epoch)
        self.epoch = epoch
        for conn in list(self.connections):
            conn.push(
                json.dumps(
                    {
                        "type": "subscribed",
                        "epoch": epoch,
                        "since": conn.pos,
                        "recovered": False,
                        "top": log_top,
                    }
                )
            )

    def _reset_position(self, top: int, epoch: str) -> None:
        """Restart from ``top``, the top read in the same pass as the reset was seen. Reading
        the top again here would skip what committed in between (a client that resumed at
        once after being told of a restore): those events would sit at or below the new
        position and never be fanned out."""
        log.warning("event log moved back (%s -> %s): resetting the relay", self.position, top)
        self.position, self.epoch = top, epoch
        for conn in list(self.connections):
            conn.pos = min(conn.pos, top)

    def _fan_out(self, events: list, scanned: int) -> None:
        """Synchronous on purpose: no connection can change state in the middle.

        Connections whose filters share a key (``EventFilter.share_key``: the same events,
        types, sources and read scope, any viewer) are checked once per event for the group:
        an event the group does not select is skipped for all of them, a public one in scope
        goes to all of them, and only the rest (targeted, outside the scope) is checked per
        connection. A batch of 1,000 events none of 1,000 sockets wants was a million checks
        holding the event loop (docs/performance.md)."""
        self.stats["batches"] += 1
        self.stats["events"] += len(events)
        encoded = [(e, None, None) for e in events]
        plans: dict = {}
        for conn in list(self.connections):
            if not conn.live:
                continue
            flt = conn.filter
            last = conn.pos
            for i, sure in self._plan(flt, encoded, plans):
                event, text, frame = encoded[i]
                if event.seq <= conn.pos or not (sure or flt.matches(event)):
                    continue
                if text is None:
                    text = encode_event(event, self.epoch)
                    encoded[i] = (event, text, None)
                if frame is None and conn.writer is not None:  # the opt-in daphne fast path
                    frame = daphne_transport.text_frame(text)
                    encoded[i] = (event, text, frame)
                if not conn.push(text, frame):
                    conn.pos = last  # a full long poll answers with what it holds
                    break
                last = event.seq
                self.stats["delivered"] += 1
            if conn.live:
                conn.pos = max(conn.pos, scanned)
        self.position = max(self.position, scanned)

    @staticmethod
    def _plan(flt, encoded: list, plans: dict) -> list[tuple[int, bool]]:
        """The events a connection with ``flt`` may want, as (index, sure): sure = it matches
        whoever the viewer is; otherwise ``flt.matches`` decides for the connection."""
        key = flt.share_key()
        if key is None:
            return [(i, False) for i in range(len(encoded))]
        plan = plans.get(key)
        if plan is None:
            plan = plans[key] = [
                (i, flt.visible_to_any_viewer(event))
                for i, (event, _, _) in enumerate(encoded)
                if flt.selects(event)
            ]
        return plan

    async def catch_up(self, conn: Connection, gen: int) -> None:
        """Replay the log for one connection until it reaches the relay, then make it live."""
        high_water = max(conn.max_queue // 2, 1)
        while conn.gen == gen and not conn.overflowed:
            if conn.pos >= self.position:  # no await between this check and going live
                conn.live = True
                return
            room = min(500, high_water - len(conn.queue))
            if room <= 0:
                await asyncio.sleep(0.01)
                continue
            events, scanned = await db_read(conn.pos, conn.filter, room)
            if conn.gen != gen:
                return
            for event in events:
                if event.seq > conn.pos and not conn.push(encode_event(event, self.epoch)):
                    return
                conn.pos = max(conn.pos, event.seq)
            conn.pos = max(conn.pos, scanned)

    # the channel layer -----------------------------------------------------------------------

    async def _listen_layer(self) -> None:
        """One Redis wake subscription per process (knowledge/wakeup.py)."""

        def woken():
            self.stats["wakes"] += 1
            self._wake.set()

        await wakeup.listen(woken)

    def snapshot(self) -> dict:
        """Called from request threads (/metrics, the dashboard) while the event loop adds and
        removes connections: one copy of the set (taken without releasing the GIL) is read."""
        connections = list(self.connections)
        return {
            "process": process_id(),
            "updated": time.time(),
            "position": self.position,
            "connections": [c.describe() for c in connections if not c.poll],
            "long_polls": sum(1 for c in connections if c.poll),
            "total_connections": self.total_connections,
            "stats": dict(self.stats),
        }


# --- Waking relays after a commit --------------------------------------------------------------


def _on_commit(seq: int) -> None:
    for relay in list(_relays):
        relay.wake()
    wakeup.publish(seq)


event_log.add_wake_hook(_on_commit)


# --- SIGTERM ----------------------------------------------------------------------------------

_sigterm_chained = False


def _chain_sigterm() -> None:
    """Put the relays' shutdown in front of the server's own SIGTERM handler.

    Only when the server installed a Python handler (daphne's Twisted reactor, uvicorn) and
    we are on the main thread; then SIGTERM first answers the long polls and closes the
    sockets of every relay of this process, then hands over to the server's handler, which
    stops it. Without this, the server would cancel the parked polls with no answer.
    """
    global _sigterm_chained
    if _sigterm_chained or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return
    _sigterm_chained = True
    loop = asyncio.get_running_loop()

    async def drain_then_stop(signum, frame):
        try:
            await asyncio.gather(*(r.shutdown() for r in list(_relays) if r.loop is loop))
            await asyncio.sleep(0.2)  # the answers leave through the server's own writes
        finally:
            previous(signum, frame)

    def on_sigterm(signum, frame):
        log.info("SIGTERM: answering long polls and closing sockets")
        loop.call_soon_threadsafe(lambda: loop.create_task(drain_then_stop(signum, frame)))

    signal.signal(signal.SIGTERM, on_sigterm)


# --- Connection tracking across processes ----------------------------------------------------


def _publish_snapshot(relay: Relay, final: bool = False) -> None:
    from django.core.cache import cache

    key = CACHE_PREFIX + process_id()
    try:
        if final and not relay.connections:
            cache.delete(key)
        else:
            cache.set(key, relay.snapshot(), 15)
        index = set(cache.get(CACHE_INDEX) or ())
        if key not in index:
            index.add(key)
            cache.set(CACHE_INDEX, sorted(index), None)
    except Exception:
        log.debug("could not mirror connection snapshot", exc_info=True)


def local_snapshots() -> list[dict]:
    return [r.snapshot() for r in list(_relays) if r.connections or r._task]


def all_snapshots() -> list[dict]:
    """Every process's connections: this process live, others from their cache mirror."""
    from django.core.cache import cache

    mine = {s["process"]: s for s in local_snapshots()}
    out = list(mine.values())
    try:
        keys = cache.get(CACHE_INDEX) or []
        for _key, snap in cache.get_many(keys).items():
            if snap and snap["process"] not in mine and time.time() - snap["updated"] < 15:
                out.append(snap)
    except Exception:
        pass
    return out


def connection_stats() -> dict:
    snaps = all_snapshots()
    conns = [c for s in snaps for c in s["connections"]]
    return {
        "enabled": product_settings().websocket_enabled,
        "processes": len(snaps),
        "connections": len(conns),
        "live": sum(1 for c in conns if c["live"]),
        "workers": sorted({c["who"] for c in conns}),
        "slow_closes": sum(s["stats"].get("slow_closes", 0) for s in snaps),
        "delivered": sum(s["stats"].get("delivered", 0) for s in snaps),
        "handshakes_refused": sum(s["stats"].get("handshakes_refused", 0) for s in snaps),
    }
