"""``GET events?wait=``: the long poll parks on the process's relay, like a socket.

Zulip's event queue is the model (``zerver/tornado/event_queue.py``): a waiting client is a
descriptor in the server process that the fan-out hands matching events to; nothing polls the
database per client. Here:

1. The DRF view runs as usual in a thread (authentication, throttles, validation, the resume
   rule, one read of the log). If it found events, or ``wait`` is 0, it answers at once.
2. Otherwise it returns its answer with a ``LongPoll`` attached; the async wrapper
   (``as_async_view``) releases the thread and parks a ``Connection`` on the relay: the same
   catch-up and in-process fan-out, filters and visibility as a socket
   (knowledge/relay.py). The first matching event, the deadline, a revoked credential or
   SIGTERM answers it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.db import connections
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.response import Response

from knowledge import live_auth
from knowledge.events import EventFilter
from knowledge.relay import Connection, Relay


@dataclass
class LongPoll:
    """What the view leaves to the async part: its answer so far and where to wait from."""

    body: dict  # epoch, since, recovered, position, top, next; results come last
    filter: EventFilter
    label: str
    viewer: str | None
    credential: live_auth.Credential | None
    position: int  # every matching event up to here was read (none matched)
    wait: float
    limit: int
    slot: object = None  # the long-poll slot (knowledge/limits.py), released once answered

    async def answer(self) -> HttpResponse:
        try:
            return await self._answer()
        finally:
            if self.slot is not None:
                await sync_to_async(self.slot.__exit__)(None, None, None)

    async def _answer(self) -> HttpResponse:
        conn = Connection(
            label=self.label,
            viewer=self.viewer,
            max_queue=self.limit,
            filter=self.filter,
            pos=self.position,
            credential=self.credential,
            poll=True,
        )
        await Relay.current().park(conn, self.wait)
        if conn.closed in (live_auth.CLOSE_UNAUTHENTICATED, live_auth.CLOSE_FORBIDDEN):
            status = 401 if conn.closed == live_auth.CLOSE_UNAUTHENTICATED else 403
            return JsonResponse({"detail": "credentials revoked", "errors": {}}, status=status)
        # ``top``/``next`` are the connection's position: everything matching up to it is in
        # ``results`` (docs/realtime.md, "Switching transports").
        head = json.dumps({**self.body, "top": conn.pos, "next": conn.pos})
        results = ",".join(conn.queue)  # already encoded by the relay, once per event
        return HttpResponse(f'{head[:-1]},"results":[{results}]}}', content_type="application/json")


def _release_pooled_connection() -> None:
    """Hand a pooled PostgreSQL connection back before parking, so waiting polls do not hold
    the pool (``DB_POOL_MAX_SIZE``); nothing more is read in this thread."""
    db = connections["default"]
    if db.settings_dict.get("OPTIONS", {}).get("pool") and not db.in_atomic_block:
        db.close()


def parked(body: dict, poll: LongPoll):
    """The view's answer when it must wait: the async wrapper takes it from here."""
    response = Response(body)
    response.long_poll = poll
    _release_pooled_connection()
    return response


def as_async_view(view_class):
    """An async view running ``view_class`` (a DRF APIView) in a thread, then parking."""
    sync_view = view_class.as_view()

    async def view(request, *args, **kwargs):
        response = await sync_to_async(sync_view)(request, *args, **kwargs)
        poll = getattr(response, "long_poll", None)
        if poll is None:
            return response
        return await poll.answer()

    # drf-spectacular documents the DRF class behind it.
    view.cls = view_class
    view.initkwargs = {}
    return csrf_exempt(view)
