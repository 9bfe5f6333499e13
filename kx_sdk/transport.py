"""How a worker talks to the exchange: one interface, two implementations.

- :class:`InProcessTransport` runs inside the Django project and calls the same serializers,
  actions and query functions as the REST API (``knowledge.actions.do_broadcast``,
  ``read_inbox``, ``do_ack``, ``knowledge.query.run_query_cached``...). On SQLite it retries a
  call that hit ``database is locked`` (another process held the write lock too long).
- :class:`HttpTransport` talks to ``/api/knowledge/`` with a worker token, using only the
  standard library. Connection errors, 5xx and 429 are retried with exponential backoff;
  broadcasts carry idempotency keys (the SDK sets them), so a retry never stores a copy.

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


# --- In-process -------------------------------------------------------------------------------


def _flatten_errors(errors: Any) -> tuple[str, str | None]:
    from knowledge.api.errors import _flatten

    flat = _flatten(errors)
    if not flat:
        return "invalid", None
    name = next(iter(flat))
    return "; ".join(f"{k}: {v[0]}" for k, v in flat.items()), name


def is_locked_error(exc: BaseException) -> bool:
    """SQLite's ``database is locked`` / ``database table is locked``."""
    from django.db import OperationalError

    return isinstance(exc, OperationalError) and "locked" in str(exc).lower()


class InProcessTransport(Transport):
    """Calls the exchange's actions directly (the worker runs inside this Django project).

    ``worker`` is a :class:`identity.models.Worker` or its name. ``lock_retries`` bounds the
    retries of a call that failed with SQLite's ``database is locked`` (each call is one or a
    few short transactions, and idempotency keys make a retried broadcast harmless).
    """

    def __init__(self, worker: Any, *, lock_retries: int = 8, lock_backoff: float = 0.05):
        from identity.models import Worker

        if isinstance(worker, str):
            found = Worker.objects.filter(name=worker, is_active=True).first()
            if found is None:
                raise SDKError(f"no active worker named {worker!r}", status=404, field="worker")
            worker = found
        self.worker = worker
        self.worker_name = worker.name
        self.lock_retries = lock_retries
        self.lock_backoff = lock_backoff
        self.lock_retries_done = 0

    def _call(self, fn: Callable[[], Any]) -> Any:
        from knowledge.errors import ActionError
        from knowledge.query import QueryError

        delay = self.lock_backoff
        for attempt in range(self.lock_retries + 1):
            try:
                return fn()
            except ActionError as exc:
                raise SDKError.from_status(exc.message, exc.status, exc.field) from exc
            except QueryError as exc:
                raise SDKError(exc.message, status=400, field=exc.field) from exc
            except Exception as exc:
                if not is_locked_error(exc) or attempt == self.lock_retries:
                    raise
                self.lock_retries_done += 1
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def _input(self, body: dict):
        from knowledge.api.serializers import BroadcastSerializer

        ser = BroadcastSerializer(data=body)
        if not ser.is_valid():
            message, name = _flatten_errors(ser.errors)
            raise SDKError(message, status=400, field=name)
        source = ser.validated_data.get("source")
        if source and source != self.worker_name:
            raise SDKError.from_status(
                f"source {source!r} is not {self.worker_name!r}", 403, "source"
            )
        return ser.to_input()

    def broadcast(self, body: dict) -> dict:
        from knowledge.actions import do_broadcast

        data = self._input(body)
        return self._call(lambda: do_broadcast(self.worker, data).as_dict())

    def broadcast_many(self, bodies: Sequence[dict]) -> list[dict]:
        from knowledge.actions import do_broadcast_many
        from knowledge.errors import ActionError

        entries: list[Any] = []
        for body in bodies:
            try:
                entries.append(self._input(body))
            except SDKError as exc:
                entries.append(ActionError(exc.message, exc.field, exc.status))

        def run() -> list[dict]:
            out = []
            for index, result in enumerate(do_broadcast_many(self.worker, entries)):
                if isinstance(result, ActionError):
                    errors = {result.field or "non_field_errors": [result.message]}
                    out.append({"index": index, "status": result.status, "errors": errors})
                else:
                    code = 201 if result.outcome != "refreshed" and not result.replayed else 200
                    out.append({"index": index, "status": code, "result": result.as_dict()})
            return out

        return self._call(run)

    def query(self, filters: dict) -> dict:
        from knowledge.api.serializers import QuerySerializer
        from knowledge.query import run_query_cached

        ser = QuerySerializer(data=filters)
        if not ser.is_valid():
            message, name = _flatten_errors(ser.errors)
            raise SDKError(message, status=400, field=name)
        query = ser.to_query()
        result, hit = self._call(lambda: run_query_cached(query, self.worker))
        return {**result, "cached": hit}

    def receive(self, limit: int = 100) -> dict:
        from knowledge.actions import read_inbox

        def run() -> dict:
            page = read_inbox(self.worker, limit)
            return {
                "epoch": page.epoch,
                "position": page.position,
                "ack": page.ack,
                "top": page.top,
                "recovered": page.recovered,
                "results": [e.as_message(page.epoch) for e in page.events],
                "next": page.ack if page.ack < page.top else None,
            }

        return self._call(run)

    def inbox_may_have_news(self, skip_after: int = 500) -> bool:
        """A cheap look before ``receive``: False when no event after the worker's cursor can
        be for it (the same SQL pre-filter as the inbox; ``read_inbox`` decides exactly).

        When the answer is False and the cursor lags more than ``skip_after`` events behind
        the top, it is moved to the top (those events were all for others), so later looks
        stay cheap. Safe because seq order is commit order: nothing at or below the top can
        still appear.
        """
        from knowledge.actions import InboxFilter, do_ack, get_subscription
        from knowledge.events import log_position
        from knowledge.models import Event, InboxCursor
        from knowledge.resume import resume

        def run() -> bool:
            cursor = (
                InboxCursor.objects.filter(worker=self.worker)
                .values_list("position", "epoch")
                .first()
            )
            pos = log_position()
            if cursor is None or not resume(cursor[0], str(cursor[1]), pos).recovered:
                return True  # first read or recovery: let read_inbox handle it
            position = cursor[0]
            if position >= pos.top:
                return False
            flt = InboxFilter(self.worker, get_subscription(self.worker))
            if Event.objects.filter(flt.q(), seq__gt=position, seq__lte=pos.top).exists():
                return True
            if pos.top - position > skip_after:
                do_ack(self.worker, pos.top)
            return False

        return self._call(run)

    def ack(self, seq: int) -> dict:
        from knowledge.actions import do_ack

        cursor = self._call(lambda: do_ack(self.worker, seq))
        return {"worker": self.worker_name, "position": cursor.position}

    def update_state(self, state: dict) -> dict:
        from knowledge.actions import do_update_state

        self._call(lambda: do_update_state(self.worker, state))
        return {"worker": self.worker_name, "state": state}

    def subscribe(self, *, types: Sequence[str] = (), events: Sequence[str] = ()) -> dict:
        from knowledge.actions import do_subscribe

        sub = self._call(lambda: do_subscribe(self.worker, types=list(types), events=list(events)))
        return {"worker": self.worker_name, "types": sub.types, "events": sub.events}

    def flag_conflict(self, item_ids: Sequence[int], reason: str) -> dict:
        from conflicts import actions as conflict_actions

        flag = getattr(conflict_actions, "do_flag_conflict", None)
        if flag is None:
            raise NotAvailableError(
                "conflict flagging is not available on this exchange (conflicts.actions has no "
                "do_flag_conflict)",
                status=501,
                field="items",
            )
        result = self._call(lambda: flag(self.worker, list(item_ids), reason))
        return (
            result.as_dict() if hasattr(result, "as_dict") else {"id": getattr(result, "pk", None)}
        )

    def close(self) -> None:
        from django.db import close_old_connections, connection

        if not connection.in_atomic_block:  # never under a caller's open transaction
            close_old_connections()


# --- HTTP -------------------------------------------------------------------------------------

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class HttpTransport(Transport):
    """Talks to a Knowledge Exchange server over HTTP with a worker token.

    ``url`` is the server's base URL (``http://127.0.0.1:8000``). The worker's name is read
    from ``GET /api/workers/me`` when not given. Requests that fail to connect, time out, or
    answer 5xx/429 are retried up to ``retries`` times, waiting ``backoff * 2**n`` seconds
    (with jitter, at most ``max_backoff``, or the server's ``Retry-After``).
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
    ):
        self.base = url.rstrip("/")
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
        return self._request(
            "GET", f"/api/knowledge/receive/{self.worker_name}", params={"limit": limit}
        )

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
