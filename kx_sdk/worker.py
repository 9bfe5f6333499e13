"""``BaseWorker``: the cycle loop, statistics, heartbeats and the knowledge methods of a worker.

A worker subclasses :class:`BaseWorker`, overrides :meth:`BaseWorker.step` (one unit of work)
and, if it keeps models, the ``update_*`` hooks that :meth:`process_received_knowledge`
routes received items to. Everything else (inbox, acks, queries, broadcasts with idempotency
keys, retries, heartbeats, following the live feed, graceful shutdown) is here. See
``docs/sdk.md`` and ``docs/workers.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import SDKError
from .spool import Spool, SpoolFullError, unreachable
from .transport import Transport

# ORIGINAL_PLAN.md, Day 1: which model each received type updates (a BaseWorker method).
ROUTES: Mapping[str, str] = {
    "risk_pattern": "update_risk_model",
    "learned_pattern": "update_pattern_models",
    "pattern_evolution": "update_pattern_models",
    "issue_pattern": "update_issue_detection",
    "proposal_quality": "update_proposal_generation",
    "successful_fix": "update_proposal_generation",
    "context_enrichment": "update_context_retrieval",
    "knowledge_retrieval": "update_context_retrieval",
}
HOOKS = frozenset(ROUTES.values())
#: Every conflict transition (docs/api.md, "Conflict events"): opened, updated, decided.
CONFLICT_EVENTS = ("conflict_detected", "conflict_updated", "knowledge_resolved")
PAGE_SIZE = 500


def body_digest(body: Mapping[str, Any]) -> str:
    """Stable hash of what a broadcast says (type, payload, confidence, urgency, targets)."""
    core = {
        k: body.get(k) for k in ("knowledge_type", "payload", "confidence", "urgency", "targets")
    }
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()


def as_body(item: Any) -> dict:
    """A broadcast body from an engine ``Draft`` (``as_dict``) or a dict."""
    if hasattr(item, "as_dict"):
        return item.as_dict()
    return dict(item)


@dataclass
class WorkerStats:
    """What a worker did since it started (sent with every heartbeat)."""

    cycles: int = 0
    errors: int = 0
    broadcast: int = 0
    unchanged_skipped: int = 0
    overruled_skipped: int = 0
    received: int = 0
    conflict_events: int = 0
    broadcast_by_type: Counter = field(default_factory=Counter)
    received_by_type: Counter = field(default_factory=Counter)
    cycle_seconds: float = 0.0
    last_cycle_seconds: float = 0.0
    reception_seconds: float = 0.0
    query_seconds: float = 0.0
    broadcast_seconds: float = 0.0
    last_error: str = ""

    @property
    def reception_overhead(self) -> float:
        """Time spent receiving and processing knowledge / time spent in cycles."""
        return self.reception_seconds / self.cycle_seconds if self.cycle_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The statistics as JSON (what the heartbeat sends)."""
        return {
            "cycles": self.cycles,
            "errors": self.errors,
            "broadcast": self.broadcast,
            "unchanged_skipped": self.unchanged_skipped,
            "overruled_skipped": self.overruled_skipped,
            "received": self.received,
            "conflict_events": self.conflict_events,
            "broadcast_by_type": dict(sorted(self.broadcast_by_type.items())),
            "received_by_type": dict(sorted(self.received_by_type.items())),
            "cycle_seconds": round(self.cycle_seconds, 4),
            "last_cycle_seconds": round(self.last_cycle_seconds, 4),
            "reception_seconds": round(self.reception_seconds, 4),
            "query_seconds": round(self.query_seconds, 4),
            "broadcast_seconds": round(self.broadcast_seconds, 4),
            "reception_overhead": round(self.reception_overhead, 4),
            "last_error": self.last_error,
        }


class BaseWorker:
    """A worker process: a loop of cycles, each receiving knowledge and doing one unit of work.

    - ``interval`` seconds between cycles, +/- ``jitter`` (a fraction) so a fleet does not
      pulse; ``stop()`` (or SIGTERM/SIGINT with ``install_signal_handlers``) ends the loop after
      the current cycle.
    - ``live = True``: the worker also follows the live feed (in a thread) and an event for it
      starts the next cycle at once instead of waiting out the interval; ``on_connect``,
      ``on_disconnect`` and ``on_error`` report the feed and the exchange.
    - Every cycle: fresh database connections (in-process), :meth:`receive` (inbox ->
      :meth:`process_received_knowledge` -> ack), :meth:`step`, a heartbeat into the worker's
      state. The requests of one cycle share ``retry_deadline`` seconds of retries; when the
      inbox is unreachable the step still runs, on the knowledge already held. An error is
      logged as one line and counted; the loop goes on.
    - ``interests``: knowledge types the worker keeps in its local view ``self.knowledge``
      (latest item per (source, type, subject)); they are subscribed to at start.
    - ``exchange=False`` cuts the worker off from others' knowledge (measurement baseline): the
      inbox is not read and queries only return the worker's own items.
    - ``spool`` (a :class:`~kx_sdk.spool.Spool`): while the exchange is unreachable,
      broadcasts are kept there and replayed in order (each cycle, and before new broadcasts),
      queries are answered from the last results, the inbox is not read; the replay is tried
      again after ``spool_retry`` seconds, doubling up to ``spool_retry_max``.
    """

    interval: float = 30.0
    jitter: float = 0.1
    #: A claim a resolution overruled is restated on a subject only this much more confident
    #: (or as another claim): :meth:`restates_overruled`.
    restate_confidence_step: float = 0.1
    interests: tuple[str, ...] = ()
    live: bool = False
    retry_deadline: float = 6.0  # seconds of retries a cycle may spend (inf: the transport's)
    live_min_gap: float = 0.5

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        old = sorted(n for n in vars(cls) if n.startswith("_update_") and n[1:] in HOOKS)
        if old:  # an override under the old name would silently never be called
            raise TypeError(
                f"{cls.__name__} overrides {', '.join(old)}: the hooks are public now, rename "
                f"to {', '.join(n[1:] for n in old)}"
            )

    def __init__(
        self,
        transport: Transport,
        *,
        interval: float | None = None,
        jitter: float | None = None,
        exchange: bool = True,
        logger: logging.Logger | None = None,
        seed: int | None = None,
        live: bool | None = None,
        retry_deadline: float | None = None,
        on_connect: Callable[[str], None] | None = None,
        on_disconnect: Callable[[str], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        spool: Spool | None = None,
        spool_retry: float = 1.0,
        spool_retry_max: float = 30.0,
    ):
        self.transport = transport
        self.name = transport.worker_name
        if interval is not None:
            self.interval = interval
        if jitter is not None:
            self.jitter = jitter
        if live is not None:
            self.live = live
        if retry_deadline is not None:
            self.retry_deadline = retry_deadline
        # A callback passed here replaces the method of the same name.
        for name, callback in (
            ("on_connect", on_connect),
            ("on_disconnect", on_disconnect),
            ("on_error", on_error),
        ):
            if callback is not None:
                setattr(self, name, callback)
        self.exchange = exchange
        self.log = logger or logging.getLogger(f"workers.{self.name}")
        self.stats = WorkerStats()
        self.knowledge: dict[tuple[str, str, str], dict] = {}
        self.conflict_log: list[dict] = []
        self.live_status = "off"  # off | connecting | live | polling | reconnecting | stopped
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by stop() and by live events
        self._want_live = False  # run() with ``live``: start the feed after setup()
        self._ready = False
        self._rng = random.Random(seed)
        self._last_sent: dict[tuple[str, str], str] = {}  # (type, subject) -> body digest
        self._subject_of: dict[str, str] = {}  # body digest -> subject
        # Claims that lost (``claim_of``): (type, subject) -> (item id, claim) of the latest
        # item sent, item id -> (type, subject), and the claims a resolution overruled.
        self._claims: dict[tuple[str, str], tuple[int, str, float]] = {}
        self._claim_key: dict[int, tuple[str, str]] = {}
        self.overruled_claims: dict[tuple[str, str], tuple[str, float]] = {}
        self._watermarks: dict[tuple[str, ...], datetime] = {}
        self._had_news = False  # the previous receive() brought knowledge
        # (ack, epoch) of the last page processed, acked by the next read (or flush_ack())
        self._pending_ack: tuple[int, str | None] | None = None
        self._live: _LiveThread | None = None
        self.spool = spool
        self._spool_retry = (spool_retry, spool_retry_max)
        self._offline_wait = 0.0  # seconds until the next try (0: the exchange answered)
        self._offline_until = 0.0  # time.monotonic() before which the exchange is not tried

    # --- loop ---------------------------------------------------------------------------------

    def setup(self) -> None:
        """Once, before the first cycle: subscribe to ``interests``. Override to load models
        (call ``super().setup()`` to keep the subscription)."""
        if self.interests:
            self.transport.subscribe(types=self.interests, events=())

    def step(self, **context: Any) -> None:
        """One unit of work; override. ``context`` is whatever the caller of run_cycle passed."""

    def run_cycle(self, **context: Any) -> bool:
        """One cycle; returns False if anything in it failed (logged as one line and counted).

        Every request of the cycle shares one retry deadline (``retry_deadline``). When the
        inbox cannot be read for a transient reason (unreachable, 5xx, 429), the step still
        runs, on the knowledge the worker already holds; after a refusal that retrying cannot
        fix (``AuthError``, another 4xx) the step is skipped.
        """
        started = time.perf_counter()
        failed = False
        self.transport.close()  # drop stale database connections (in-process)
        with self.transport.deadline(self.retry_deadline):
            try:
                try:
                    if not self._ready:
                        self.setup()
                        self._ready = True
                    if self._want_live and self._live is None:
                        self._live = _LiveThread.start(self)
                    self.replay_spool()
                    self._receive_unless_offline()
                except SDKError as exc:
                    failed = True
                    if not exc.transient:
                        raise
                    self._failed("inbox unreachable, the step runs on cached knowledge", exc)
                self.step(**context)
            except Exception as exc:  # one failing cycle never kills the loop
                failed = True
                self._failed("cycle failed", exc)
            finally:
                elapsed = time.perf_counter() - started
                self.stats.cycles += 1
                self.stats.cycle_seconds += elapsed
                self.stats.last_cycle_seconds = elapsed
                self.heartbeat("error" if failed else "running", quiet=failed)
                self.transport.close()
        return not failed

    def _failed(self, what: str, exc: Exception) -> None:
        self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
        if isinstance(exc, SDKError):  # one line, no chained traceback (debug has it)
            self.log.warning("%s: %s: %s: %s", self.name, what, type(exc).__name__, exc)
            self.log.debug("%s: %s: traceback", self.name, what, exc_info=True)
        else:  # a bug in the worker's own code: the traceback is the useful part
            self.log.exception("%s: %s", self.name, what)
        self._call_on_error(exc)

    def _call_on_error(self, exc: BaseException) -> None:
        try:
            self.on_error(exc)
        except Exception:
            self.log.exception("%s: on_error failed", self.name)

    def next_delay(self) -> float:
        """Seconds until the next cycle: ``interval`` +/- ``jitter``."""
        spread = self.interval * self.jitter
        return max(0.0, self.interval + self._rng.uniform(-spread, spread))

    def run(self, *, once: bool = False, max_cycles: int | None = None) -> WorkerStats:
        """Run cycles until ``stop()`` (or a signal), or once, or ``max_cycles`` cycles.

        With ``live`` the worker follows the live feed meanwhile: an event for it ends the wait
        between cycles early (at most one cycle per ``live_min_gap`` seconds).
        """
        self.log.info("%s: started (interval %.1fs)", self.name, self.interval)
        # The feed starts in the first cycle, once ``setup`` has subscribed to ``interests``: a
        # feed that subscribed before would follow the old subscription until the server
        # refreshes it, and miss what the new one brings.
        self._want_live = self.live and not once
        try:
            while not self._stop.is_set():
                self.run_cycle()
                if once or (max_cycles is not None and self.stats.cycles >= max_cycles):
                    break
                self._wait(self.next_delay())
        finally:
            if self._live is not None:
                self._live.stop()
                self._live = None
            self.flush_ack()
        self.heartbeat("stopped")
        self.log.info("%s: stopped after %d cycles", self.name, self.stats.cycles)
        return self.stats

    def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or until stop() or a live event (after ``live_min_gap``)."""
        end = time.monotonic() + delay
        if self._live is not None and self._stop.wait(min(self.live_min_gap, delay)):
            return
        self._wake.wait(max(0.0, end - time.monotonic()))
        self._wake.clear()

    def wake(self) -> None:
        """Start the next cycle now instead of after the interval (thread-safe)."""
        self._wake.set()

    def stop(self, *_: Any) -> None:
        """Ask the loop to end after the current cycle (safe from signal handlers, threads)."""
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """True once ``stop()`` was called."""
        return self._stop.is_set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT end the loop gracefully (main thread only)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)

    def state_document(self) -> dict[str, Any]:
        """Extra fields for the heartbeat; override to publish model statistics."""
        return {}

    def heartbeat(self, status: str = "running", *, quiet: bool = False) -> None:
        """Write the worker's state (status, stats, ``state_document()``); a failure is logged
        (at DEBUG with ``quiet``, when the cycle already reported why), never raised. With a
        spool, what it holds is replayed first, and nothing is sent while offline."""
        if self.spool is not None:
            self.replay_spool()
            if self.offline:  # the exchange did not answer: not worth a (long) retry
                return
        state = {
            "status": status,
            "heartbeat": datetime.now(UTC).isoformat(),
            "exchange": self.exchange,
            "stats": self.stats.as_dict(),
            **self.state_document(),
        }
        if self.live:
            state["live"] = self.live_status
        if self.spool is not None:
            state["spool"] = self.spool.status()
        try:
            self.transport.update_state(state)
        except Exception as exc:  # a missed heartbeat is not worth a failed cycle
            level = logging.DEBUG if quiet else logging.WARNING
            self.log.log(level, "%s: heartbeat failed: %s: %s", self.name, type(exc).__name__, exc)

    # --- callbacks ------------------------------------------------------------------------------

    def _feed_status(self, status: str) -> None:
        previous, self.live_status = self.live_status, status
        connected = ("live", "polling")
        try:
            if status in connected and status != previous:
                self.on_connect(status)
            elif previous in connected and status not in connected:
                self.on_disconnect(status)
        except Exception:
            self.log.exception("%s: on_connect/on_disconnect failed", self.name)

    def on_connect(self, mode: str) -> None:
        """The live feed is connected (again): ``mode`` is ``live`` (WebSocket) or ``polling``
        (long poll). Called from the feed's thread. The default logs one line."""
        self.log.info("%s: live feed connected (%s)", self.name, mode)

    def on_disconnect(self, reason: str) -> None:
        """The live feed lost its connection (``reconnecting``) or ended (``stopped``); cycles
        go on every ``interval``. Called from the feed's thread. The default logs one line."""
        self.log.info("%s: live feed %s", self.name, reason)

    def on_error(self, error: BaseException) -> None:
        """An error the loop survived: a failed cycle or inbox read (an ``SDKError``, or an
        exception from your own code), or the live feed stopping on ``AuthError``. Called
        after the one-line log; from the feed's thread for the feed's errors. Default: nothing.
        """

    # --- spool: the exchange unreachable ----------------------------------------------------------

    @property
    def offline(self) -> bool:
        """The exchange did not answer lately: its next try is not due yet (spool only)."""
        return self.spool is not None and time.monotonic() < self._offline_until

    def _went_offline(self, exc: SDKError) -> None:
        low, high = self._spool_retry
        self._offline_wait = min(high, self._offline_wait * 2) if self._offline_wait else low
        self._offline_until = time.monotonic() + self._offline_wait
        self.log.warning(
            "%s: the exchange is unreachable (%s); working offline, next try in %.1fs",
            self.name,
            exc,
            self._offline_wait,
        )

    def _came_online(self) -> None:
        self._offline_wait = self._offline_until = 0.0

    def replay_spool(self) -> int:
        """Send what the spool holds, in order, if a try is due; returns the entries sent.

        One attempt per entry (no transport retries: the spool is the retry). An entry the
        exchange refuses (4xx) goes to the spool's dead letters and is logged.
        """
        if self.spool is None or self.offline or not self.spool.depth():
            return 0
        retries = getattr(self.transport, "retries", None)
        if retries is not None:
            self.transport.retries = 0
        try:
            result = self.spool.replay(
                self.transport.broadcast,
                send_many=self.transport.broadcast_many,
                on_sent=lambda body, answer: self._record_sent(body, body_digest(body), answer),
            )
        finally:
            if retries is not None:
                self.transport.retries = retries
        if result.dead:
            self.stats.errors += result.dead
            self.stats.last_error = f"{result.dead} spooled broadcast(s) refused: dead letters"
            self.log.error(
                "%s: %d spooled broadcast(s) refused, kept as dead letters in %s",
                self.name,
                result.dead,
                self.spool.path,
            )
        if result.error is not None:
            self._went_offline(result.error)
        else:
            self._came_online()
        if result.sent:
            self.log.info("%s: replayed %d spooled broadcast(s)", self.name, result.sent)
        return result.sent

    def _receive_unless_offline(self) -> None:
        if self.offline:
            return
        try:
            self.receive()
        except SDKError as exc:
            if self.spool is None or not unreachable(exc):
                raise
            self._went_offline(exc)  # the cycle goes on with what the worker knows

    def _spool(self, bodies: list[dict]) -> list[dict]:
        """Keep ``bodies`` in the spool; the results ``broadcast`` returns for them."""
        assert self.spool is not None
        try:
            self.spool.put_many(bodies)
        except SpoolFullError as exc:  # like any failed broadcast: its key, safe to resend
            raise exc.for_broadcast(bodies[0]["idempotency_key"]) if len(bodies) == 1 else exc
        return [
            {
                "item": None,
                "outcome": "spooled",
                "conflicts": [],
                "replayed": False,
                "spooled": True,
                "idempotency_key": body["idempotency_key"],
            }
            for body in bodies
        ]

    def _must_spool(self) -> bool:
        """True when a new broadcast must go to the spool: offline, or older entries remain
        (sending it now would overtake them)."""
        if self.spool is None:
            return False
        self.replay_spool()
        return self.offline or self.spool.depth() > 0

    # --- local view of knowledge ------------------------------------------------------------------

    def remember(self, item: Mapping[str, Any]) -> None:
        """Keep ``item`` as the latest of its (source, type, subject) in ``self.knowledge``."""
        key = (str(item.get("source")), str(item.get("knowledge_type")), str(item.get("subject")))
        if item.get("status", "active") == "active":
            self.knowledge[key] = dict(item)
        elif self.knowledge.get(key, {}).get("id") == item.get("id"):
            del self.knowledge[key]

    def known(self, types: Iterable[str] | None = None, *, own: bool = False) -> list[dict]:
        """Items of the local view (only the worker's own with ``own`` or exchange off)."""
        wanted = set(types) if types is not None else None
        mine = own or not self.exchange
        return [
            item
            for (source, kind, _), item in self.knowledge.items()
            if (wanted is None or kind in wanted) and (not mine or source == self.name)
        ]

    # --- queries ----------------------------------------------------------------------------------

    def query_knowledge(
        self,
        types: Sequence[str] | None = None,
        *,
        sources: Sequence[str] | None = None,
        urgency: Sequence[str] | None = None,
        min_urgency: str | None = None,
        min_freshness: float = 0.0,
        min_confidence: float | None = None,
        limit: int | None = None,
        sort: str = "-freshness",
        until: Callable[[dict], bool] | None = None,
        page_size: int | None = None,
        **filters: Any,
    ) -> list[dict]:
        """Items matching the filters, following pages up to ``limit`` items (None: all).

        ``until(item)`` stops at the first item for which it is true (that item is left out).
        With exchange off only the worker's own items are returned. With a spool, the answer
        is kept, and while the exchange is unreachable the last answer to the same query is
        returned, its freshness recomputed (an error if it was never answered).
        """
        body: dict[str, Any] = {"sort": sort, "min_freshness": min_freshness, **filters}
        if types:
            body["types"] = list(types)
        if not self.exchange:
            sources = [self.name]
        if sources:
            body["sources"] = list(sources)
        if urgency:
            body["urgency"] = list(urgency)
        if min_urgency:
            body["min_urgency"] = min_urgency
        if min_confidence is not None:
            body["min_confidence"] = min_confidence
        started = time.perf_counter()
        cache_key = json.dumps({**body, "limit": limit, "paged": until is not None}, sort_keys=True)
        try:
            if self.spool is None:
                return self._query_pages(body, limit, until, page_size)
            if not self.offline:
                try:
                    out = self._query_pages(body, limit, until, page_size)
                except SDKError as exc:
                    if not unreachable(exc):
                        raise
                    self._went_offline(exc)
                else:
                    self._came_online()
                    self.spool.cache_put(cache_key, out)
                    return out
            cached = self.spool.cache_get(cache_key)
            if cached is None:
                raise SDKError(
                    "the exchange is unreachable and this query was never answered before",
                    status=503,
                )
            return self._from_cache(cached[0], body)
        finally:
            self.stats.query_seconds += time.perf_counter() - started

    @staticmethod
    def _from_cache(items: list[dict], body: dict) -> list[dict]:
        """The cached answer as the exchange would give it now: freshness recomputed (by the
        spool), items below ``min_freshness`` left out, freshness order restored."""
        floor = body.get("min_freshness") or 0.0
        kept = [i for i in items if i.get("freshness", 1.0) >= floor]
        if body.get("sort") in ("-freshness", "freshness"):
            kept.sort(key=lambda i: i.get("freshness", 0.0), reverse=body["sort"] == "-freshness")
        return kept

    def _query_pages(
        self,
        body: dict[str, Any],
        limit: int | None,
        until: Callable[[dict], bool] | None,
        page_size: int | None,
    ) -> list[dict]:
        out: list[dict] = []
        size = page_size or PAGE_SIZE
        while True:
            want = size if limit is None else min(size, limit - len(out))
            page = self.transport.query({**body, "limit": want})
            for item in page["results"]:
                if until is not None and until(item):
                    return out
                out.append(item)
            if not page.get("next") or (limit is not None and len(out) >= limit):
                return out
            body["cursor"] = page["next"]
            size = min(PAGE_SIZE, size * 4)  # small first page for deltas, then grow

    def get_relevant_knowledge(self, **filters: Any) -> list[dict]:
        """Items of the types this worker is interested in (all types without interests)."""
        return self.query_knowledge(list(self.interests) or None, **filters)

    def get_knowledge_by_source(self, source: str, **filters: Any) -> list[dict]:
        """Items broadcast by the worker ``source`` (``types=`` and other filters as in
        :meth:`query_knowledge`)."""
        return self.query_knowledge(filters.pop("types", None), sources=[source], **filters)

    def get_knowledge_by_urgency(self, min_urgency: str, **filters: Any) -> list[dict]:
        """Items at or above ``min_urgency`` (low, normal, high, critical)."""
        return self.query_knowledge(filters.pop("types", None), min_urgency=min_urgency, **filters)

    def refresh_knowledge(self, types: Sequence[str], *, lookback: float = 5.0) -> int:
        """Query ``types`` and merge the answer into the local view; returns items merged.

        The first call loads every active item; later calls only those observed since the
        previous call (minus ``lookback`` seconds for transactions that committed late).
        """
        key = tuple(sorted(types))
        since = self._watermarks.get(key)
        now = datetime.now(UTC)

        def older(item: dict) -> bool:
            return since is not None and datetime.fromisoformat(item["observed_at"]) < since

        items = self.query_knowledge(
            list(key), sort="-observed_at", until=older, page_size=None if since is None else 25
        )
        for item in items:
            self.remember(item)
        self._watermarks[key] = now - timedelta(seconds=lookback)
        return len(items)

    # --- broadcasting -----------------------------------------------------------------------------

    def _record_sent(self, body: dict, digest: str, result: dict) -> None:
        item = result.get("item") or {}
        subject = str(item.get("subject", ""))
        self._subject_of[digest] = subject
        self._last_sent[(body["knowledge_type"], subject)] = digest
        self.stats.broadcast += 1
        self.stats.broadcast_by_type[body["knowledge_type"]] += 1
        if item:
            self.remember(item)
            self._note_claim(body, item)

    def note_sent(self, item: Mapping[str, Any]) -> None:
        """Treat an item of this worker found in the exchange (e.g. after a restart) as the
        latest it sent for that subject, so an identical body is not sent again."""
        body = {k: item.get(k) for k in ("knowledge_type", "payload", "confidence", "urgency")}
        body["targets"] = list(item.get("targets") or [])
        digest = body_digest(body)
        self._subject_of[digest] = str(item.get("subject", ""))
        self._last_sent[(str(item.get("knowledge_type")), str(item.get("subject", "")))] = digest
        self.remember(item)

    def is_unchanged(self, body: Mapping[str, Any]) -> bool:
        """True when the latest item this worker sent for that subject said exactly this."""
        digest = body_digest(body)
        subject = self._subject_of.get(digest)
        return (
            subject is not None and self._last_sent.get((body["knowledge_type"], subject)) == digest
        )

    # --- claims that lost a resolution -------------------------------------------------------

    def claim_of(self, body: Mapping[str, Any]) -> tuple[str, str] | None:
        """``(subject, claim)`` of a body to broadcast, as the exchange will derive them
        (the type's subject and claim fields); override to turn on the rule "a claim that
        lost is not restated on the same evidence" (:meth:`restates_overruled`). The
        default, ``None``: the SDK cannot tell, every changed body is sent."""
        return None

    def _note_claim(self, body: Mapping[str, Any], item: Mapping[str, Any]) -> None:
        key = self.claim_of(body)
        if key is None or not isinstance(item.get("id"), int):
            return
        subject, claim = key
        where = (str(body["knowledge_type"]), subject)
        previous = self._claims.get(where)
        if previous is not None:
            self._claim_key.pop(previous[0], None)
        self._claims[where] = (item["id"], claim, float(body["confidence"]))
        self._claim_key[item["id"]] = where

    def _note_resolution(self, event: Mapping[str, Any]) -> None:
        """A resolution that superseded this worker's latest item on a subject marks its claim
        (and confidence) there as overruled; one its latest item won lifts the mark."""
        if event.get("event") != "knowledge_resolved":
            return
        data = event.get("data") or {}
        for field_name, lost in (("superseded_item_ids", True), ("winner_item_ids", False)):
            for item_id in data.get(field_name) or ():
                where = self._claim_key.get(item_id) if isinstance(item_id, int) else None
                if where is None:
                    continue
                if lost:
                    self.overruled_claims[where] = self._claims[where][1:]
                else:
                    self.overruled_claims.pop(where, None)

    def restates_overruled(self, body: Mapping[str, Any]) -> bool:
        """True when ``body`` says again, on a subject, the claim a resolution overruled there
        on evidence no stronger: its confidence less than ``restate_confidence_step`` above the
        overruled item's (a new score, sample count or text does not count). A body with
        another claim, or the same claim that much more confident, is sent and lifts the mark:
        the worker's evidence moved, a new disagreement may be raised (if it loses again, the
        new resolution sets the mark again)."""
        if not self.overruled_claims:
            return False
        key = self.claim_of(body)
        where = None if key is None else (str(body["knowledge_type"]), key[0])
        lost = self.overruled_claims.get(where) if where is not None else None
        if lost is None:
            return False
        claim, confidence = lost
        if claim == key[1] and body["confidence"] < confidence + self.restate_confidence_step:
            return True
        del self.overruled_claims[where]
        return False

    def broadcast(
        self,
        knowledge_type: str,
        payload: Mapping[str, Any],
        confidence: float,
        urgency: str = "normal",
        *,
        targets: Sequence[str] = (),
        idempotency_key: str | None = None,
        observed_at: datetime | None = None,
    ) -> dict:
        """Broadcast one item; returns ``{"item", "outcome", "conflicts", "replayed"}``.

        Without ``idempotency_key`` a random one is used, so transport retries never store
        a copy; pass a key derived from your input to make restarts idempotent too.

        With a spool, when the exchange is unreachable (refused, timeout, 5xx) the body is
        committed to the spool with its key and ``{"item": None, "outcome": "spooled",
        "spooled": True, "idempotency_key"}`` is returned (``SpoolFullError`` if it is full).
        """
        body: dict[str, Any] = {
            "knowledge_type": knowledge_type,
            "payload": dict(payload),
            "confidence": confidence,
            "urgency": urgency,
            "targets": list(targets),
            "idempotency_key": idempotency_key or f"{self.name}:{uuid.uuid4().hex}",
        }
        if observed_at is not None:
            body["observed_at"] = observed_at.isoformat()
        started = time.perf_counter()
        try:
            if self._must_spool():
                return self._spool([body])[0]
            try:
                result = self.transport.broadcast(body)
            except SDKError as exc:
                if self.spool is None or not unreachable(exc):
                    raise exc.for_broadcast(body["idempotency_key"])
                self._went_offline(exc)
                return self._spool([body])[0]
        finally:
            self.stats.broadcast_seconds += time.perf_counter() - started
        self._came_online()
        self._record_sent(body, body_digest(body), result)
        return result

    def broadcast_many(
        self,
        drafts: Iterable[Any],
        *,
        key: Callable[[dict], str] | None = None,
        only_changed: bool = True,
    ) -> list[dict]:
        """Broadcast engine drafts (or bodies) in bulk; returns the per-item results sent.

        ``only_changed`` leaves out a body identical to the latest this worker sent for the
        same subject. ``key(body)`` gives each item's idempotency key (random by default).
        A rejected item is logged and counted as an error; the others are stored. With a
        spool, an unreachable exchange spools the whole batch (one transaction) and the
        results say ``"outcome": "spooled"``.
        """
        bodies, digests = [], []
        for draft in drafts:
            body = as_body(draft)
            body.setdefault("targets", [])
            if only_changed and self.is_unchanged(body):
                self.stats.unchanged_skipped += 1
                continue
            if only_changed and self.restates_overruled(body):
                self.stats.overruled_skipped += 1
                continue
            digest = body_digest(body)
            body["idempotency_key"] = key(body) if key else f"{self.name}:{uuid.uuid4().hex}"
            bodies.append(body)
            digests.append(digest)
        if not bodies:
            return []
        started = time.perf_counter()
        try:
            if self._must_spool():
                return self._spool(bodies)
            try:
                results = self.transport.broadcast_many(bodies)
            except SDKError as exc:
                if self.spool is None or not unreachable(exc):
                    raise
                self._went_offline(exc)
                return self._spool(bodies)
        finally:
            self.stats.broadcast_seconds += time.perf_counter() - started
        self._came_online()
        out = []
        for entry in results:
            index = entry["index"]
            if "result" in entry:
                self._record_sent(bodies[index], digests[index], entry["result"])
                out.append(entry["result"])
            else:
                self.stats.errors += 1
                self.stats.last_error = f"broadcast rejected: {entry.get('errors')}"[:500]
                self.log.warning("%s: broadcast rejected: %s", self.name, entry.get("errors"))
        return out

    def flag_conflict(self, item_ids: Sequence[int], reason: str) -> dict:
        """Ask the exchange to treat these items as conflicting (``POST conflicts/flag``)."""
        if len(item_ids) < 2:
            raise SDKError("flag at least two items", status=400, field="items")
        return self.transport.flag_conflict(list(item_ids), reason)

    # --- reception ------------------------------------------------------------------------------

    def receive(self, *, limit: int = PAGE_SIZE, max_pages: int = 1000) -> list[dict]:
        """Drain the inbox: process each page's knowledge; a page is acked once processed
        (at-least-once), by the next read when the transport can (``ack_on_read``: one call
        per page), else at once.

        Returns the knowledge items received. Conflict events go to :meth:`on_conflict_event`,
        in log order with the items: the items that came before a conflict event (in runs, one
        ``process_received_knowledge`` call per run) are processed before it. With exchange
        off nothing is read. A processed page not yet acked (the last one) is acked by the
        next cycle's read or by :meth:`flush_ack` (``run`` calls it when the loop ends); a
        crash before that redelivers it.
        """
        if not self.exchange:
            return []
        started = time.perf_counter()
        received: list[dict] = []
        # The cheap look pays when the inbox is usually empty (an idle worker); right after a
        # read that brought news, the next read is likely to bring news too: skip the look.
        peek = None if self._had_news else getattr(self.transport, "inbox_may_have_news", None)
        try:
            after = self._pending_ack[0] if self._pending_ack else None
            if peek is not None and not (peek() if after is None else peek(after=after)):
                self._had_news = False
                return received
            for _ in range(max_pages):
                page = self._read_page(limit)
                items: list[dict] = []
                for event in page["results"]:
                    kind = event.get("event")
                    data = event.get("data") or {}
                    if kind == "knowledge_broadcast" and isinstance(data.get("item"), dict):
                        items.append(data["item"])
                    elif kind in CONFLICT_EVENTS:
                        # In log order: the items before it (the broadcast that caused it
                        # among them) are processed first, in one batch.
                        received.extend(self._process_batch(items))
                        items = []
                        self.stats.conflict_events += 1
                        self._note_resolution(event)
                        self.on_conflict_event(event)
                received.extend(self._process_batch(items))
                if page["ack"] > page.get("position", -1):
                    if getattr(self.transport, "ack_on_read", False):
                        self._pending_ack = (page["ack"], page.get("epoch"))
                    else:
                        self.transport.ack(page["ack"])
                if page.get("next") is None or page["ack"] <= page.get("position", -1):
                    break
            # A processed page still to ack (say one of conflict events only) makes the next
            # cycle read, which acks it, instead of only looking for news.
            self._had_news = bool(received) or self._pending_ack is not None
        finally:
            self.stats.reception_seconds += time.perf_counter() - started
        return received

    def _read_page(self, limit: int) -> dict:
        """The next page, acking the processed one in the same call when there is one."""
        pending = self._pending_ack
        if pending is None:
            return self.transport.receive(limit)
        try:
            page = self.transport.receive(limit, ack=pending[0], epoch=pending[1])
        except SDKError as exc:
            if exc.status != 409:
                raise
            # The inbox moved on without this ack (its state was cleared, the log reset or
            # restored): the page was processed; read from where the inbox stands.
            self.log.info("%s: ack %s refused, reading on: %s", self.name, pending[0], exc)
            self._pending_ack = None
            return self.transport.receive(limit)
        self._pending_ack = None
        if page.get("position", pending[0]) < pending[0] and page.get("recovered", True):
            # A server that ignores ``ack`` (older than the SDK): ack explicitly from now on.
            self.transport.ack(pending[0])
            self.transport.ack_on_read = False
            return self.transport.receive(limit)
        return page

    def flush_ack(self) -> None:
        """Ack the last processed page now (an explicit ``ack`` call) instead of on the next
        read; a failure is logged (the page will be delivered again), never raised."""
        pending, self._pending_ack = self._pending_ack, None
        if pending is None:
            return
        try:
            self.transport.ack(pending[0])
        except Exception as exc:
            self.log.warning("%s: ack failed: %s: %s", self.name, type(exc).__name__, exc)

    def _process_batch(self, items: list[dict]) -> list[dict]:
        if items:
            self.process_received_knowledge(items)
        return items

    def on_conflict_event(self, event: dict) -> None:
        """A conflict involving this worker changed; override to react.

        ``event`` is the event message: ``event["event"]`` is ``conflict_detected`` (opened),
        ``conflict_updated`` (moved to review, proposal or items changed) or
        ``knowledge_resolved`` (resolved or dismissed); ``event["data"]["transition"]`` names
        the transition and ``event["data"]["conflict"]`` carries the conflict's state (status,
        proposal, probability, version). It arrives after the broadcast of the item that caused
        it (docs/api.md, "Event order").

        The default keeps the event in ``conflict_log`` and forgets what it last sent, so the
        next cycle re-asserts claims that lost (if the worker still holds them).
        """
        self.conflict_log.append(event)
        del self.conflict_log[:-100]
        self._last_sent.clear()

    def process_received_knowledge(self, knowledge: list[dict]) -> None:
        """Route the received items to the models they update (ORIGINAL_PLAN.md Day 1), in
        batches: each hook is called once per call with all of its items, in arrival order
        (``receive`` calls it once per page, or once per run of items between two conflict
        events, so that a conflict event is handled after the broadcast that caused it)."""
        batches: dict[str, list[dict]] = {}
        for item in knowledge:
            knowledge_type = str(item.get("knowledge_type"))
            self.remember(item)
            route = ROUTES.get(knowledge_type)
            if route is not None:
                batches.setdefault(route, []).append(item)
            self.stats.received += 1
            self.stats.received_by_type[knowledge_type] += 1
        for route, items in batches.items():
            getattr(self, route)(items)

    def update_risk_model(self, items: list[dict]) -> None:
        """Hook: ``risk_pattern`` items received (one call per inbox page). Default: nothing."""

    def update_pattern_models(self, items: list[dict]) -> None:
        """Hook: ``learned_pattern`` / ``pattern_evolution`` items received. Default: nothing."""

    def update_issue_detection(self, items: list[dict]) -> None:
        """Hook: ``issue_pattern`` items received. Default: nothing."""

    def update_proposal_generation(self, items: list[dict]) -> None:
        """Hook: ``proposal_quality`` / ``successful_fix`` items received. Default: nothing."""

    def update_context_retrieval(self, items: list[dict]) -> None:
        """Hook: ``context_enrichment`` / ``knowledge_retrieval`` items received. Default:
        nothing."""


class _LiveThread:
    """The live feed of a running ``BaseWorker``, in a thread with its own event loop: every
    event wakes the worker's loop; status changes call ``on_connect`` / ``on_disconnect``."""

    def __init__(self, worker: BaseWorker):
        self.worker = worker
        self.loop: asyncio.AbstractEventLoop | None = None
        self.feed: Any = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name=f"{worker.name}-live", daemon=True)

    @classmethod
    def start(cls, worker: BaseWorker) -> _LiveThread | None:
        try:
            feed = worker.transport.live_feed(
                standing=True,  # what the worker's inbox holds (its subscription)
                on_status=worker._feed_status,
            )
        except SDKError as exc:
            worker.log.warning(
                "%s: no live feed (%s); a cycle every %.1fs", worker.name, exc, worker.interval
            )
            return None
        self = cls(worker)
        self.feed = feed
        self.thread.start()
        self.ready.wait(5)
        return self

    def _main(self) -> None:
        asyncio.run(self._follow())

    async def _follow(self) -> None:
        worker = self.worker
        self.loop = asyncio.get_running_loop()
        self.ready.set()
        try:
            async for _event in self.feed:
                worker._wake.set()
        except asyncio.CancelledError:
            pass
        except SDKError as exc:  # AuthError: the feed stops; cycles go on every interval
            worker.log.warning(
                "%s: live feed stopped: %s: %s", worker.name, type(exc).__name__, exc
            )
            worker._call_on_error(exc)
        except Exception as exc:
            worker.log.warning(
                "%s: live feed stopped: %s: %s", worker.name, type(exc).__name__, exc
            )
            worker._call_on_error(exc)
        finally:
            await self.feed.close()

    def stop(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                asyncio.run_coroutine_threadsafe(self.feed.close(), self.loop)
        self.thread.join(5)
