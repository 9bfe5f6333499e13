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

import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from .errors import NotAvailableError, SDKError, TransportError


class Transport:
    """The exchange as a worker sees it (see the module docstring)."""

    worker_name: str

    def broadcast(self, body: dict) -> dict:
        """Store one item: ``{"item": {...}, "outcome", "conflicts": [ids], "replayed"}``."""
        raise NotImplementedError

    def broadcast_many(self, bodies: Sequence[dict]) -> list[dict]:
        """Store many items; one ``{"index", "status", "result" | "errors"}`` per body."""
        raise NotImplementedError

    def query(self, filters: dict) -> dict:
        """One page of a query: ``{"results": [...], "next": cursor | None}``."""
        raise NotImplementedError

    def receive(self, limit: int = 100) -> dict:
        """The next inbox page: ``{"results": [event messages], "ack": seq, "top", ...}``."""
        raise NotImplementedError

    def ack(self, seq: int) -> dict:
        raise NotImplementedError

    def update_state(self, state: dict) -> dict:
        raise NotImplementedError

    def subscribe(self, *, types: Sequence[str] = (), events: Sequence[str] = ()) -> dict:
        raise NotImplementedError

    def flag_conflict(self, item_ids: Sequence[int], reason: str) -> dict:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (database connections); the transport stays usable."""


# --- HTTP -------------------------------------------------------------------------------------

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class HttpTransport(Transport):
    """Talks to a Knowledge Exchange server over HTTP with a worker token.

    ``url`` is the server's base URL (``http://127.0.0.1:8000``). The worker's name is read
    from ``GET /api/workers/me`` when not given. Requests that fail to connect, time out, or
    answer 5xx/429 are retried up to ``retries`` times, waiting ``backoff * 2**n`` seconds
    (with jitter, at most ``max_backoff``, or the server's ``Retry-After``). ``inbox_start``
    is where the worker's inbox starts on its very first read: ``"now"`` (the server's
    default: from the worker's creation) or ``"beginning"`` (every event the log still
    holds); it changes nothing once the inbox has a position (docs/api.md, "Inbox start").
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
        self.sleep = sleep
        self.retries_done = 0
        self.worker_name = worker or self._request("GET", "/api/workers/me")["name"]

    def _request(self, method: str, path: str, body: Any = None, params: dict | None = None) -> Any:
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Token {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            wait = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                return json.loads(raw) if raw else {}
            except urllib.error.HTTPError as exc:
                raw = exc.read()
                if exc.code in RETRY_STATUSES and attempt < self.retries:
                    retry_after = exc.headers.get("Retry-After") if exc.headers else None
                    if retry_after and retry_after.isdigit():
                        wait = min(float(retry_after), self.max_backoff)
                else:
                    raise self._error(exc.code, raw) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                if attempt >= self.retries:
                    raise TransportError(f"{method} {path}: {exc}") from exc
            self.retries_done += 1
            if wait is None:
                wait = min(self.max_backoff, self.backoff * 2**attempt) * (
                    0.5 + random.random() / 2
                )
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

    def receive(self, limit: int = 100) -> dict:
        params: dict = {"limit": limit}
        if self.inbox_start != "now":
            params["start"] = self.inbox_start
        return self._request("GET", f"/api/knowledge/receive/{self.worker_name}", params=params)

    def ack(self, seq: int) -> dict:
        return self._request("POST", f"/api/knowledge/receive/{self.worker_name}/ack", {"seq": seq})

    def update_state(self, state: dict) -> dict:
        return self._request("PUT", f"/api/knowledge/state/{self.worker_name}", {"state": state})

    def subscribe(self, *, types: Sequence[str] = (), events: Sequence[str] = ()) -> dict:
        return self._request(
            "POST", "/api/knowledge/subscribe", {"types": list(types), "events": list(events)}
        )

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
