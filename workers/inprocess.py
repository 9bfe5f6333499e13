"""The in-process transport: the SDK's :class:`kx_sdk.Transport` inside this Django project.

:class:`InProcessTransport` calls the same serializers, actions and query functions as the REST
API (``knowledge.actions.do_broadcast``, ``read_inbox``, ``do_ack``,
``knowledge.query.run_query_cached``...). On SQLite it retries a call that hit ``database is
locked`` (another process held the write lock too long). It is the server side of the SDK, so it
lives here and not in ``kx_sdk`` (which imports nothing from the server's apps).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from kx_sdk.errors import SDKError
from kx_sdk.transport import Transport


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
    ``inbox_start`` as for ``kx_sdk.HttpTransport``.
    """

    ack_on_read = True  # ``receive(ack=...)``: the SDK acks a page on its next read

    def __init__(
        self,
        worker: Any,
        *,
        lock_retries: int = 8,
        lock_backoff: float = 0.05,
        inbox_start: str = "now",
    ):
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
        self.inbox_start = inbox_start  # first read only: "now" or "beginning" (docs/api.md)

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

    def _entries(self, bodies: Sequence[dict]) -> list[Any]:
        """Each body validated as the bulk view does (fields, source, write scope)."""
        from knowledge.api.presenters import broadcast_entries

        return broadcast_entries(self.worker, bodies)

    def broadcast(self, body: dict) -> dict:
        from knowledge.actions import do_broadcast
        from knowledge.errors import ActionError

        [data] = self._entries([body])
        if isinstance(data, ActionError):
            raise SDKError.from_status(data.message, data.status, data.field)
        return self._call(lambda: do_broadcast(self.worker, data).as_dict())

    def broadcast_many(self, bodies: Sequence[dict]) -> list[dict]:
        from knowledge.actions import do_broadcast_many
        from knowledge.api.presenters import bulk_answer

        entries = self._entries(bodies)
        return self._call(lambda: bulk_answer(do_broadcast_many(self.worker, entries)))["results"]

    def query(self, filters: dict) -> dict:
        from rest_framework.exceptions import ValidationError

        from knowledge.api.presenters import parse_query
        from knowledge.errors import ActionError
        from knowledge.query import run_query_cached

        try:
            query = parse_query(filters)
        except ValidationError as exc:
            message, name = _flatten_errors(exc.detail)
            raise SDKError(message, status=400, field=name) from exc
        except ActionError as exc:
            raise SDKError.from_status(exc.message, exc.status, exc.field) from exc
        result, hit = self._call(lambda: run_query_cached(query, self.worker))
        return {**result, "cached": hit}

    def receive(
        self, limit: int = 100, *, ack: int | None = None, epoch: str | None = None
    ) -> dict:
        from knowledge.actions import read_inbox
        from knowledge.api.presenters import inbox_page

        return self._call(
            lambda: inbox_page(
                read_inbox(self.worker, limit, start=self.inbox_start, ack=ack, epoch=epoch)
            )
        )

    def inbox_may_have_news(self, after: int | None = None, skip_after: int = 500) -> bool:
        """A cheap look before ``receive``: False when no event after the worker's cursor (or
        after ``after``, a page the worker processed and will ack on its next read) can be for
        it (the same SQL pre-filter as the inbox; ``read_inbox`` decides exactly).

        One statement when the log has nothing after that point (the inbox's state, as
        ``read_inbox`` reads it), two otherwise. True as well when the cursor lags more than
        ``skip_after`` events behind the top: the read then moves past them (all for others),
        so later looks stay cheap.
        """
        from knowledge.actions import InboxFilter
        from knowledge.inbox import inbox_state
        from knowledge.models import Event
        from knowledge.resume import resume

        def run() -> bool:
            state = inbox_state(self.worker)
            if not state.exists or not resume(state.position, state.epoch, state.log).recovered:
                return True  # first read or recovery: let read_inbox handle it
            position = max(state.position, after or 0)
            top = state.log.top
            if position >= top:
                return False
            if top - position > skip_after:
                return True
            flt = InboxFilter(self.worker, state.sub)
            return Event.objects.filter(flt.q(), seq__gt=position, seq__lte=top).exists()

        return self._call(run)

    def ack(self, seq: int) -> dict:
        from knowledge.actions import do_ack
        from knowledge.api.presenters import ack_answer

        return ack_answer(self.worker, self._call(lambda: do_ack(self.worker, seq)))

    def update_state(self, state: dict) -> dict:
        from knowledge.actions import do_update_state
        from knowledge.api.presenters import worker_state

        self._call(lambda: do_update_state(self.worker, state))
        return self._call(lambda: worker_state(self.worker))

    def subscribe(self, *, types: Sequence[str] = (), events: Sequence[str] = ()) -> dict:
        from knowledge.actions import do_subscribe
        from knowledge.api.presenters import subscription_dict

        sub = self._call(lambda: do_subscribe(self.worker, types=list(types), events=list(events)))
        return subscription_dict(sub)

    def flag_conflict(self, item_ids: Sequence[int], reason: str) -> dict:
        from conflicts.actions import do_flag_conflict
        from conflicts.api.serializers import ConflictSerializer

        conflict = self._call(lambda: do_flag_conflict(self.worker, list(item_ids), reason))
        return dict(ConflictSerializer(conflict).data)

    def close(self) -> None:
        """Drop stale database connections, never under a caller's open transaction.

        A usable SQLite connection is kept: it has no server side to go stale, and closing
        the last connection to the file checkpoints and deletes its write-ahead log, which
        the next write recreates (about 17 ms of I/O each way at load ~18, docs/workers.md,
        "Reception overhead"): a worker closing it every cycle paid both every cycle.
        """
        from django.db import close_old_connections, connection

        if connection.in_atomic_block:
            return
        if connection.vendor == "sqlite" and not connection.errors_occurred:
            return
        close_old_connections()
