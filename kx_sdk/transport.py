"""How a worker talks to the exchange: one interface, :class:`Transport`.

- :class:`HttpTransport` talks to ``/api/knowledge/`` with a worker token, using only the
  standard library. Connection errors, 5xx and 429 are retried with exponential backoff;
  broadcasts carry idempotency keys (the SDK sets them), so a retry never stores a copy.
- The server's built-in workers use ``workers.inprocess.InProcessTransport`` (in the server's
  repository, not in this package): the same interface, calling the server's actions directly.

Every method returns the JSON shapes of the REST API (see ``docs/api.md``), whatever the
transport, so a worker never knows which one it has.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .backoff import parse_retry_after
from .errors import NotAvailableError, SDKError, TransportError

if TYPE_CHECKING:
    from .live import LiveFeed


class Transport:
    """The exchange as a worker sees it (see the module docstring).

    Every method answers the REST API's JSON shape, or raises an :class:`~kx_sdk.SDKError`.
    """

    worker_name: str
    _deadline_at: float | None = None  # the end of the current ``deadline()`` block
    _gave_up: bool = False  # a request of that block failed for good after its retries
    clock: Callable[[], float] = staticmethod(time.monotonic)  # what deadlines are measured on

    @contextlib.contextmanager
    def deadline(self, seconds: float | None) -> Iterator[None]:
        """Share one retry deadline between every request made inside the ``with`` block.

        Retries stop ``seconds`` from now, and once one request has failed for good (the
        exchange unreachable through its retries), the block's later requests fail at once
        with :class:`~kx_sdk.TransportError` instead of spending their own retries.
        ``BaseWorker`` wraps each cycle in it (``retry_deadline``), so a cycle that cannot
        reach the exchange costs about ``retry_deadline`` seconds, not one retry budget per
        request. ``None``: no shared deadline. Blocks do not nest.
        """
        self._deadline_at = None if seconds is None else self.clock() + seconds
        self._gave_up = False
        try:
            yield
        finally:
            self._deadline_at = None
            self._gave_up = False

    def broadcast(self, body: dict) -> dict:
        """Store one item: ``{"item": {...}, "outcome", "conflicts": [ids], "replayed"}``."""
        raise NotImplementedError

    def broadcast_many(self, bodies: Sequence[dict]) -> list[dict]:
        """Store many items; one ``{"index", "status", "result" | "errors"}`` per body."""
        raise NotImplementedError

    def query(self, filters: dict) -> dict:
        """One page of a query: ``{"results": [...], "next": cursor | None}``."""
        raise NotImplementedError

    # True when ``receive`` takes ``ack`` / ``epoch``: acknowledge the previous page and read
    # the next in one call (BaseWorker then acks each page on its next read).
    ack_on_read: bool = False

    def receive(
        self, limit: int = 100, *, ack: int | None = None, epoch: str | None = None
    ) -> dict:
        """The next inbox page: ``{"results": [event messages], "ack": seq, "top", ...}``.

        With ``ack`` (transports with ``ack_on_read``): first acknowledge the page whose
        ``ack`` (and ``epoch``) that is; a stale one, one beyond what was offered or one from
        another epoch is refused (``SDKError``, status 409)."""
        raise NotImplementedError

    def ack(self, seq: int) -> dict:
        """Move the inbox cursor to ``seq``: ``{"worker", "position"}``."""
        raise NotImplementedError

    def update_state(self, state: dict) -> dict:
        """Replace the worker's status document (heartbeats): ``{"worker", "state"}``."""
        raise NotImplementedError

    def subscribe(self, *, types: Sequence[str] = (), events: Sequence[str] = ()) -> dict:
        """Set the worker's standing subscription (its inbox filter)."""
        raise NotImplementedError

    def flag_conflict(self, item_ids: Sequence[int], reason: str) -> dict:
        """Ask the exchange to treat these items as conflicting (``NotAvailableError`` if it
        cannot)."""
        raise NotImplementedError

    def live_feed(self, **options: Any) -> LiveFeed:
        """A :class:`~kx_sdk.LiveFeed` on this exchange with this transport's credentials
        (``options`` are LiveFeed's). ``NotAvailableError`` when the transport has none."""
        raise NotAvailableError(f"{type(self).__name__} has no live feed", status=None)

    def close(self) -> None:
        """Release resources (database connections); the transport stays usable."""


# --- HTTP -------------------------------------------------------------------------------------

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MIN_TIMEOUT = 1.0  # the shortest socket timeout a request gets near its deadline


class HttpTransport(Transport):
    """Talks to a Knowledge Exchange server over HTTP with a worker token.

    ``url`` is the server's base URL (``http://127.0.0.1:8000``). The worker's name is read
    from ``GET /api/workers/me`` when not given. Requests that fail to connect, time out, or
    answer 5xx/429 are retried up to ``retries`` times, waiting ``backoff * 2**n`` seconds
    (with jitter, at most ``max_backoff``, or the server's ``Retry-After``), and never past
    ``retry_deadline`` seconds after the first attempt (``None``: ``retries`` alone bounds
    them; see also :meth:`Transport.deadline`). Standard library only. ``inbox_start`` is
    where the worker's inbox starts on its very first read: ``"now"`` (the server's default:
    from the worker's creation) or ``"beginning"`` (every event the log still holds); it
    changes nothing once the inbox has a position (docs/api.md, "Inbox start").
    """

    def __init__(
        self,
        url: str,
        token: str,
        worker: str | None = None,
        *,
        timeout: float = 15.0,
        retries: int = 5,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
        retry_deadline: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        inbox_start: str = "now",
    ):
        self.base = url.rstrip("/")
        self.inbox_start = inbox_start
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retry_deadline = retry_deadline
        self.sleep = sleep
        self.retries_done = 0
        self.worker_name = worker or self._request("GET", "/api/workers/me")["name"]

    def _end(self) -> float | None:
        """When retrying must stop: the shared block's deadline or this request's own."""
        ends = [self._deadline_at]
        if self.retry_deadline is not None:
            ends.append(self.clock() + self.retry_deadline)
        return min((e for e in ends if e is not None), default=None)

    def _request(self, method: str, path: str, body: Any = None, params: dict | None = None) -> Any:
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Token {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        end = self._end()
        if self._gave_up:  # inside a deadline() block that already failed for good
            raise TransportError(
                f"{method} {path}: not sent, the exchange was unreachable within the retry deadline"
            )
        started = self.clock()
        for attempt in range(self.retries + 1):
            timeout = self.timeout
            if end is not None:  # a hanging server must not outlast the deadline either
                timeout = max(MIN_TIMEOUT, min(timeout, end - self.clock()))
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    raw = response.read()
                return json.loads(raw) if raw else {}
            except urllib.error.HTTPError as exc:
                raw = exc.read()
                if exc.code not in RETRY_STATUSES:
                    raise self._error(exc.code, raw) from None
                failure: SDKError = self._error(exc.code, raw)
                retry_after = parse_retry_after(
                    exc.headers.get("Retry-After") if exc.headers else None
                )
                wait = min(retry_after, self.max_backoff) if retry_after is not None else None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                reason = getattr(exc, "reason", exc)
                failure = TransportError(f"{method} {path}: {reason}")
                wait = None
            if wait is None:
                wait = min(self.max_backoff, self.backoff * 2**attempt) * (
                    0.5 + random.random() / 2
                )
            if attempt >= self.retries or (end is not None and self.clock() + wait > end):
                self._gave_up = self._deadline_at is not None
                failure.message += (
                    f" (after {attempt + 1} attempts in {self.clock() - started:.1f}s)"
                )
                raise failure from None
            self.retries_done += 1
            self.sleep(wait)
        raise AssertionError("unreachable")

    @staticmethod
    def _error(status: int, raw: bytes) -> SDKError:
        try:
            doc = json.loads(raw)
        except ValueError:
            return SDKError(f"HTTP {status}: {raw[:200]!r}", status=status)
        errors = doc.get("errors") or {} if isinstance(doc, dict) else {}
        name = next(iter(errors), None)
        detail = doc.get("detail") if isinstance(doc, dict) else None
        return SDKError.from_status(str(detail or doc), status, name)

    def broadcast(self, body: dict) -> dict:
        return self._request("POST", "/api/knowledge/broadcast", body)

    def broadcast_many(self, bodies: Sequence[dict]) -> list[dict]:
        out: list[dict] = []
        step = 500
        for start in range(0, len(bodies), step):
            chunk = list(bodies[start : start + step])
            answer = self._request("POST", "/api/knowledge/broadcast/bulk", {"items": chunk})
            for entry in answer["results"]:
                out.append({**entry, "index": entry["index"] + start})
        return out

    def query(self, filters: dict) -> dict:
        return self._request("POST", "/api/knowledge/query", filters)

    ack_on_read = True

    def receive(
        self, limit: int = 100, *, ack: int | None = None, epoch: str | None = None
    ) -> dict:
        params: dict = {"limit": limit}
        if self.inbox_start != "now":
            params["start"] = self.inbox_start
        if ack is not None:
            params["ack"] = ack
            if epoch is not None:
                params["epoch"] = epoch
        return self._request("GET", f"/api/knowledge/receive/{self.worker_name}", params=params)

    def ack(self, seq: int) -> dict:
        return self._request("POST", f"/api/knowledge/receive/{self.worker_name}/ack", {"seq": seq})

    def update_state(self, state: dict) -> dict:
        return self._request("PUT", f"/api/knowledge/state/{self.worker_name}", {"state": state})

    def subscribe(self, *, types: Sequence[str] = (), events: Sequence[str] = ()) -> dict:
        return self._request(
            "POST", "/api/knowledge/subscribe", {"types": list(types), "events": list(events)}
        )

    def live_feed(self, **options: Any) -> LiveFeed:
        from .live import LiveFeed

        return LiveFeed(self.base, self.token, **options)

    def flag_conflict(self, item_ids: Sequence[int], reason: str) -> dict:
        try:
            return self._request(
                "POST", "/api/knowledge/conflicts/flag", {"items": list(item_ids), "reason": reason}
            )
        except SDKError as exc:
            # No such route (an HTML 404 page, 405, 501): the server predates conflicts.
            if exc.status in (405, 501) or (
                exc.status == 404 and exc.message.startswith("HTTP 404")
            ):
                raise NotAvailableError(
                    f"conflict flagging is not available on this server ({exc.message})",
                    status=exc.status,
                    field="items",
                ) from exc
            raise
