"""Python client for the live feed (the Python twin of static/js/knowledge-socket.js).

The WebSocket transport needs the optional ``websockets`` package
(``pip install "knowledge-exchange-sdk[live]"``); without it the feed long-polls with the
standard library and logs one line saying so when it starts.

    feed = LiveFeed("http://127.0.0.1:8000", token, types=["risk_pattern"], since=last_seen)
    async for event in feed:          # {"seq", "epoch", "event", "data", "created_at"}
        handle(event)                 # in seq order, each once
        save(feed.last_seq)           # resume from here after a restart

Promises (see docs/realtime.md): every (re)subscribe and every poll asks for
``since = last_seq``; events with ``seq <= last_seq`` are dropped whichever transport brought
them; a changed epoch or ``recovered: false`` calls ``on_reset`` and continues from the
server's ``top``. WebSocket first; after ``fallback_after`` connects that closed before
``subscribed`` it long-polls ``GET /api/knowledge/events`` and tries the socket again every
``ws_retry`` seconds. Reconnects use full-jitter exponential backoff; a 4008 (too slow)
reconnects at once; a 4401 (bad token) raises ``AuthError``. A handshake the server refused
because it is busy (HTTP 503 with ``Retry-After``, or close 4013 ``retry after N s``) waits
that long plus the jitter (``kx_sdk.backoff.retry_delay``) and does not count as a failed
connect: the server is there and said when to come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable

from .backoff import (  # backoff_delay: still importable from here
    DEFAULT_RETRY_AFTER,
    backoff_delay,
    parse_retry_after,
    retry_after_from_reason,
    retry_delay,
)
from .errors import AuthError  # an SDKError; still importable from here

log = logging.getLogger(__name__)

CLOSE_AUTH = 4401
CLOSE_TOO_SLOW = 4008
CLOSE_TRY_AGAIN = 4013  # the server's handshake bound, when it cannot answer HTTP 503


def _stands_at(answer: dict):
    """Where the server says this client now stands (the resume rule's ``position``)."""
    return answer.get("position", answer.get("top"))


def websockets_available() -> bool:
    """True if the optional ``websockets`` package (the ``live`` extra) can be imported."""
    try:
        import websockets.asyncio.client  # noqa: F401
    except ImportError:
        return False
    return True


async def _in_daemon_thread(fn: Callable[[], dict]) -> dict:
    """Run a blocking call in a daemon thread (not the loop's executor): ``close()`` does not
    wait for a parked long poll, and neither does the interpreter at exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def settle(result, error) -> None:
        if not future.done():
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    def target() -> None:
        try:
            outcome = (fn(), None)
        except BaseException as exc:  # handed to the awaiting coroutine
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=target, name="kx-live-poll", daemon=True).start()
    return await future


class LiveFeed:
    """Follow the exchange's event log: an async iterator of events, each once, in seq order.

    ::

        feed = LiveFeed("http://127.0.0.1:8000", token, types=["risk_pattern"])
        async for event in feed:     # {"seq", "epoch", "event", "data", "created_at"}
            print(event["event"], event["data"])
        # elsewhere: await feed.close()

    Filters: ``types`` (knowledge types), ``sources`` (worker names), ``events`` (event kinds:
    ``knowledge_broadcast``, ``conflict_detected``, ...); empty means all. ``standing=True``
    follows the worker's standing subscription instead (what its inbox holds). ``since`` is
    the seq to resume after (``None``: from now) and ``epoch`` the log epoch it belongs to;
    ``last_seq`` is where the feed stands, to save for a restart.

    Callbacks (called in the event loop's thread; keep them short): ``on_status(status)``
    with ``connecting``, ``live`` (WebSocket), ``polling`` (long poll), ``reconnecting``,
    ``stopped``; ``on_reset(info)`` when the log cannot fill the gap since ``last_seq``
    (``info``: ``reason``, ``epoch``, ``previous_epoch``, ``previous_seq``, ``top``): reload
    your state with a query, the feed goes on from ``top``.

    ``use_websocket=False`` (or no ``websockets`` installed) long-polls ``GET
    /api/knowledge/events`` only. A refused token raises :class:`~kx_sdk.AuthError` from the
    iteration. The other arguments tune reconnection (see docs/realtime.md). To use it beside
    the synchronous ``BaseWorker.run()``, set ``live = True`` on the worker: it runs a feed
    in a thread and wakes its loop on every event.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        types: Iterable[str] = (),
        sources: Iterable[str] = (),
        events: Iterable[str] = (),
        standing: bool = False,
        since: int | None = None,
        epoch: str | None = None,
        on_reset: Callable[[dict], None] | None = None,
        on_status: Callable[[str], None] | None = None,
        backoff_base: float = 0.5,
        backoff_factor: float = 2.0,
        backoff_cap: float = 15.0,
        stable_after: float = 10.0,
        heartbeat_timeout: float = 45.0,
        fallback_after: int = 3,
        ws_retry: float = 30.0,
        poll_wait: float = 25.0,
        use_websocket: bool = True,
        max_buffer: int = 1000,
    ):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.filters = {"types": list(types), "sources": list(sources), "events": list(events)}
        self.standing = standing
        self.last_seq = since
        self.epoch = epoch
        self.on_reset = on_reset
        self.on_status = on_status
        self.backoff = (backoff_base, backoff_factor, backoff_cap)
        self.stable_after = stable_after
        self.heartbeat_timeout = heartbeat_timeout
        self.fallback_after = fallback_after
        self.ws_retry = ws_retry
        self.poll_wait = poll_wait
        self.use_websocket = use_websocket
        self.status = "idle"
        self.mode: str | None = None
        self.stats = {
            "events": 0,
            "duplicates": 0,
            "resets": 0,
            "reconnects": 0,
            "slow_closes": 0,
            "refusals": 0,  # handshakes refused as busy (503 / 4013)
        }
        self._out: asyncio.Queue = asyncio.Queue(max_buffer)
        self._task: asyncio.Task | None = None
        self._stopped = False
        self._error: BaseException | None = None

    # --- public --------------------------------------------------------------------------------

    def __aiter__(self):
        self.start()
        return self

    async def __anext__(self) -> dict:
        """The next event (waits for it); ``StopAsyncIteration`` after ``close()``."""
        while True:
            if self._out.empty() and self._task is not None and self._task.done():
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            getter = asyncio.ensure_future(self._out.get())
            done, _ = await asyncio.wait({getter, self._task}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                return getter.result()
            getter.cancel()

    def start(self) -> LiveFeed:
        """Connect in the background (iterating starts it too); call inside a running loop.

        Without ``websockets`` installed the feed long-polls, and says so in one log line."""
        if self.use_websocket and not websockets_available():
            self.use_websocket = False
            log.warning(
                "live feed: websockets is not installed; following the feed by long polling "
                "(for the WebSocket: pip install 'knowledge-exchange-sdk[live]')"
            )
        if self._task is None:
            self._stopped = False
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def close(self) -> None:
        """Stop following (a parked long poll is abandoned, not awaited); status ``stopped``."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._set_status("stopped")

    # --- state ---------------------------------------------------------------------------------

    def _set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            if self.on_status:
                self.on_status(status)

    def _reconcile(self, epoch, recovered, top) -> bool:
        previous = self.epoch
        changed = previous is not None and epoch is not None and str(epoch) != previous
        if epoch is not None:
            self.epoch = str(epoch)
        if not changed and recovered is not False:
            return False
        info = {
            "reason": "epoch_changed" if changed else "not_recovered",
            "epoch": self.epoch,
            "previous_epoch": previous,
            "previous_seq": self.last_seq,
            "top": top,
        }
        self.last_seq = top
        self.stats["resets"] += 1
        if self.on_reset:
            self.on_reset(info)
        return True

    async def _deliver(self, msg: dict) -> None:
        seq = msg.get("seq")
        if not isinstance(seq, int):
            return
        if msg.get("epoch") and self.epoch and str(msg["epoch"]) != self.epoch:
            self._reconcile(msg["epoch"], True, None)
        if self.last_seq is not None and seq <= self.last_seq:
            self.stats["duplicates"] += 1
            return
        self.last_seq = seq
        self.stats["events"] += 1
        out = {k: v for k, v in msg.items() if k != "type"}
        await self._out.put(out)

    # --- the loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._loop()
        except AuthError as exc:
            self._error = exc
            self._set_status("stopped")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: surface it to the iterator
            self._error = exc
            raise

    async def _loop(self) -> None:
        attempt = failures = slow = 0
        self.mode = "ws" if self.use_websocket else "poll"
        self._set_status("connecting")
        while not self._stopped:
            if self.mode == "poll":
                await self._poll_for(self.ws_retry if self.use_websocket else float("inf"))
                if not self.use_websocket:
                    continue
            started = time.monotonic()
            code, subscribed, retry_after = await self._ws_session()
            if code == CLOSE_AUTH:
                raise AuthError("live feed: the server refused the token (close 4401)", status=401)
            if subscribed:
                failures = 0
                if time.monotonic() - started >= self.stable_after:
                    attempt = slow = 0
            if retry_after is not None:  # busy: come back when it says, plus jitter
                self.stats["refusals"] += 1
                delay = retry_delay(attempt, retry_after, *self.backoff)
                attempt += 1
            elif code == CLOSE_TOO_SLOW:
                self.stats["slow_closes"] += 1
                delay = 0.0 if slow == 0 else backoff_delay(attempt, *self.backoff)
                slow += 1
                attempt += 1 if delay else 0
            else:
                if not subscribed:
                    failures += 1
                    if self.mode == "poll" or (
                        self.fallback_after and failures >= self.fallback_after
                    ):
                        self.mode = "poll"  # keep polling; the next probe is ws_retry away
                        continue
                delay = backoff_delay(attempt, *self.backoff)
                attempt += 1
            self.stats["reconnects"] += 1
            self._set_status("reconnecting")
            await asyncio.sleep(delay)

    def _ws_url(self) -> str:
        url = self.base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return f"{url}/ws/knowledge/?token={urllib.parse.quote(self.token)}"

    async def _ws_session(self) -> tuple[int | None, bool, float | None]:
        """One socket: subscribe from last_seq, read until it closes. (close code,
        subscribed, the server's retry-after if it refused the socket as busy)."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        subscribed = False
        try:
            async with connect(
                self._ws_url(), open_timeout=10, max_size=2**22, ping_interval=None
            ) as ws:
                msg = {"action": "subscribe", "since": self.last_seq}
                msg.update({k: v for k, v in self.filters.items() if v})
                if self.standing:
                    msg["standing"] = True
                await ws.send(json.dumps(msg))
                while not self._stopped:
                    try:
                        raw = await asyncio.wait_for(ws.recv(), self.heartbeat_timeout)
                    except TimeoutError:
                        log.warning(
                            "live feed: no message for %ss; reconnecting", self.heartbeat_timeout
                        )
                        return None, subscribed, None
                    data = json.loads(raw)
                    kind = data.get("type")
                    if kind == "event":
                        await self._deliver(data)
                    elif kind == "subscribed":
                        was_none = self.last_seq is None
                        reset = self._reconcile(
                            data.get("epoch"), data.get("recovered"), _stands_at(data)
                        )
                        if not reset and was_none and self.last_seq is None:
                            self.last_seq = data.get("top")
                        subscribed = True
                        self.mode = "ws"
                        self._set_status("live")
                    elif kind == "error":
                        log.warning("live feed: server error: %s", data.get("message"))
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            if rcvd and rcvd.code == CLOSE_TRY_AGAIN:
                retry = retry_after_from_reason(rcvd.reason)
                return rcvd.code, subscribed, DEFAULT_RETRY_AFTER if retry is None else retry
            return (rcvd.code if rcvd else None), subscribed, None
        except InvalidStatus as exc:  # refused at the handshake: 503 = busy, else a failure
            response = exc.response
            retry = parse_retry_after(response.headers.get("Retry-After"))
            if response.status_code == 503 and retry is not None:
                return None, subscribed, retry
            log.info("live feed: socket refused: HTTP %s", response.status_code)
            return None, subscribed, None
        except (OSError, TimeoutError) as exc:
            log.info("live feed: connect failed: %s", exc)
            return None, subscribed, None
        except Exception as exc:  # handshake refused (e.g. HTTP 403) and the like
            log.info("live feed: socket failed: %r", exc)
            return None, subscribed, None
        return None, subscribed, None

    # --- polling -------------------------------------------------------------------------------

    def _poll_url(self) -> str:
        # Until a poll has answered, ask without waiting: the first answer says where the log
        # stands and that the server is there (status ``polling``) at once, not after a parked
        # poll's ``poll_wait`` seconds.
        params = {"wait": self.poll_wait if self.status == "polling" else 0}
        if self.last_seq is not None:
            params["since"] = self.last_seq
        if self.standing:
            params["standing"] = "true"
        for key, values in self.filters.items():
            if values:
                params[key] = ",".join(values)
        return f"{self.base_url}/api/knowledge/events?{urllib.parse.urlencode(params)}"

    def _poll_once(self) -> dict:
        req = urllib.request.Request(
            self._poll_url(),
            headers={"Authorization": f"Token {self.token}", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.poll_wait + 10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise AuthError(
                    f"live feed: poll refused: HTTP {exc.code}", status=exc.code
                ) from None
            raise

    async def _poll_for(self, seconds: float) -> None:
        """Long-poll for ``seconds`` (then the caller probes the socket again)."""
        deadline = time.monotonic() + seconds
        attempt = 0
        while not self._stopped and time.monotonic() < deadline:
            try:
                body = await _in_daemon_thread(self._poll_once)
            except AuthError:
                raise
            except Exception as exc:
                self._set_status("reconnecting")
                log.info("live feed: poll failed: %s", exc)
                await asyncio.sleep(backoff_delay(attempt, *self.backoff))
                attempt += 1
                continue
            attempt = 0
            self._set_status("polling")
            was_none = self.last_seq is None
            reset = self._reconcile(body.get("epoch"), body.get("recovered"), _stands_at(body))
            results = sorted(body.get("results", []), key=lambda e: e.get("seq", 0))
            for ev in results:
                await self._deliver(ev)
            if was_none and not reset and not results:
                self.last_seq = body.get("top")
            if not results:
                await asyncio.sleep(0.05)
