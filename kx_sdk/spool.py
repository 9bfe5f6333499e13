"""A durable local spool: broadcasts kept while the exchange is unreachable, replayed in order.

One SQLite file per worker (standard library ``sqlite3``, WAL journal, ``synchronous=FULL``:
an entry is on disk before :meth:`Spool.put` returns, so it survives the worker's restart and
``kill -9``). Three tables:

- ``spool``: broadcast bodies waiting to be sent, each with the idempotency key it was given
  before its first attempt (a replay after an uncertain failure answers the stored item, it
  never stores a copy), in insertion order (``AUTOINCREMENT``: ids are never reused);
- ``dead_letter``: entries the exchange refused on replay (a 4xx other than 401/403/408/409/429),
  with the status and the error; kept until an operator looks (:meth:`Spool.requeue_dead_letters`
  puts them back, :meth:`Spool.dead_letters` lists them);
- ``query_cache``: the last answer of each query the worker made, so its loop keeps running on
  it while the exchange is down; freshness is recomputed from each item's ``observed_at`` and
  its type's decay when read.

The spool is bounded (``max_entries``, ``max_bytes``): a put that would go past a bound raises
:class:`SpoolFullError` and stores nothing; nothing already spooled is ever dropped.

Inspect a spool (also while its worker runs)::

    python -m kx_sdk.spool PATH            # status and the dead letters, as JSON
    python -m kx_sdk.spool PATH --requeue  # put the dead letters back in the spool
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import AuthError, SDKError

DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_MAX_BYTES = 256 * 2**20
# The server's decay of a type it does not know (knowledge.registry.DEFAULT_DECAY_SECONDS).
DEFAULT_DECAY_SECONDS = 7 * 86400.0
# Statuses after which a replayed entry stays in the spool (tried again later).
RETRY_LATER_STATUSES = frozenset({408, 409, 429})

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    failed_at REAL NOT NULL,
    status INTEGER,
    error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS query_cache (
    query TEXT PRIMARY KEY,
    results TEXT NOT NULL,
    answered_at REAL NOT NULL
);
"""


class SpoolFullError(SDKError):
    """The spool is at its bound (``max_entries`` or ``max_bytes``): the broadcast was neither
    sent nor kept. Nothing spooled earlier was dropped; retry once the exchange is back."""


def unreachable(exc: SDKError) -> bool:
    """The exchange could not answer: connection refused or reset, timeout, 5xx (503 included).
    A 4xx is the caller's error and is never spooled."""
    return exc.status is None or exc.status >= 500


def default_spool_path(worker: str) -> Path:
    """``$XDG_STATE_HOME/knowledge-exchange/<worker>.spool.sqlite3`` (``~/.local/state/...``)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local/state")
    return Path(base) / "knowledge-exchange" / f"{worker}.spool.sqlite3"


@dataclass(frozen=True)
class SpoolEntry:
    id: int
    idempotency_key: str
    body: dict
    created_at: float
    attempts: int


@dataclass
class ReplayResult:
    """What one replay did: entries ``sent`` (stored or already stored), ``dead`` (moved to the
    dead letters), ``remaining`` in the spool, and the ``error`` that stopped it (None: drained)."""

    sent: int = 0
    dead: int = 0
    remaining: int = 0
    error: SDKError | None = None


class Spool:
    """The spool of one worker (see the module docstring). Thread-safe; one process per file."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        decays: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be at least 1")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.decays = dict(decays or {})
        self.clock = clock
        self._lock = threading.Lock()
        # Autocommit mode: every statement outside an explicit BEGIN is its own transaction.
        self._db = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # fsync at every commit, WAL included
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the SQLite file (what it holds stays on disk)."""
        with self._lock:
            self._db.close()

    def _tx(self):
        return _Transaction(self._db, self._lock)

    # --- the spool ------------------------------------------------------------------------------

    def put(self, body: Mapping[str, Any]) -> bool:
        """Keep one broadcast body (it must carry its ``idempotency_key``); committed to disk
        on return. False if that key is already spooled (a restarted worker resending it)."""
        return self.put_many([body]) == 1

    def put_many(self, bodies: Iterable[Mapping[str, Any]]) -> int:
        """Keep several bodies in one transaction, all or none; returns how many were new.
        Raises :class:`SpoolFullError` (nothing kept) if they would pass a bound."""
        rows = []
        for body in bodies:
            key = body.get("idempotency_key")
            if not key:
                raise ValueError("a spooled body needs its idempotency_key")
            text = json.dumps(dict(body), sort_keys=True, separators=(",", ":"))
            rows.append((str(key), text, len(text.encode())))
        now = self.clock()
        with self._tx() as db:
            keys = [r[0] for r in rows]
            known = {
                k
                for chunk in _chunks(keys, 500)
                for (k,) in db.execute(
                    f"SELECT idempotency_key FROM spool WHERE idempotency_key IN "
                    f"({','.join('?' * len(chunk))})",
                    chunk,
                )
            }
            new, seen = [], set(known)
            for row in rows:
                if row[0] not in seen:
                    seen.add(row[0])
                    new.append(row)
            count, size = db.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM spool"
            ).fetchone()
            added = sum(r[2] for r in new)
            if count + len(new) > self.max_entries or size + added > self.max_bytes:
                raise SpoolFullError(
                    f"the spool is full ({count} entries, {size} bytes; bounds "
                    f"{self.max_entries} entries, {self.max_bytes} bytes): {len(new)} broadcast(s) "
                    f"neither sent nor kept; nothing spooled earlier was dropped ({self.path})",
                    status=None,
                    field="spool",
                )
            db.executemany(
                "INSERT INTO spool (idempotency_key, body, size, created_at) VALUES (?, ?, ?, ?)",
                [(k, text, n, now) for k, text, n in new],
            )
        return len(new)

    def depth(self) -> int:
        """How many broadcasts wait in the spool."""
        with self._lock:
            return self._db.execute("SELECT count(*) FROM spool").fetchone()[0]

    def entries(self, limit: int = 100) -> list[SpoolEntry]:
        """The oldest ``limit`` entries, in the order they were spooled."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, idempotency_key, body, created_at, attempts FROM spool "
                "ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [SpoolEntry(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

    def record_failure(self, entry: SpoolEntry, error: str) -> None:
        """Count a failed attempt at ``entry`` and keep its error (the entry stays)."""
        with self._tx() as db:
            db.execute(
                "UPDATE spool SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                (error[:1000], entry.id),
            )

    def dead_letters(self, limit: int = 1000) -> list[dict]:
        """The entries the exchange refused on replay, oldest first: ``{"id",
        "idempotency_key", "body", "created_at", "failed_at", "status", "error"}``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, idempotency_key, body, created_at, failed_at, status, error "
                "FROM dead_letter ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            {
                "id": r[0],
                "idempotency_key": r[1],
                "body": json.loads(r[2]),
                "created_at": r[3],
                "failed_at": r[4],
                "status": r[5],
                "error": r[6],
            }
            for r in rows
        ]

    def requeue_dead_letters(self) -> int:
        """Put every dead letter back at the end of the spool (after fixing what refused it)."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, idempotency_key, body FROM dead_letter ORDER BY id"
            ).fetchall()
            now = self.clock()
            for _, key, body in rows:
                db.execute(
                    "INSERT OR IGNORE INTO spool (idempotency_key, body, size, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (key, body, len(body.encode()), now),
                )
            db.execute("DELETE FROM dead_letter")
        return len(rows)

    def status(self) -> dict[str, Any]:
        """``{"depth", "oldest_age_seconds", "dead_letters"}`` (the worker's ``state.spool``)."""
        with self._lock:
            depth, oldest = self._db.execute(
                "SELECT count(*), min(created_at) FROM spool"
            ).fetchone()
            dead = self._db.execute("SELECT count(*) FROM dead_letter").fetchone()[0]
        age = round(max(self.clock() - oldest, 0.0), 3) if oldest is not None else 0.0
        return {"depth": depth, "oldest_age_seconds": age, "dead_letters": dead}

    def replay(
        self,
        send: Callable[[dict], dict],
        *,
        send_many: Callable[[list[dict]], list[dict]] | None = None,
        on_sent: Callable[[dict, dict], None] | None = None,
        batch: int = 100,
    ) -> ReplayResult:
        """Send the spooled entries in order, with their keys: ``send(body)`` (a transport's
        ``broadcast``) or, given, ``send_many(bodies)`` (its ``broadcast_many``: one
        ``{"index", "status", "result" | "errors"}`` per body) ``batch`` entries at a time.

        An entry leaves the spool only once the exchange has answered it: 2xx (stored, or
        already stored under its key) -> removed; a 4xx the caller caused -> dead letter; the
        exchange unreachable, 5xx, 401/403 (a token to fix, not the entry's fault) or
        408/409/429 -> the replay stops there: that entry and the ones after it stay, in order
        (in a bulk, later entries the exchange did store stay too: resent, they answer 200).
        A bulk the exchange refuses as a whole (a 4xx, e.g. too large) is sent one by one.
        """
        out = ReplayResult()
        while True:
            entries = self.entries(batch)
            if not entries:
                return out
            answers = None
            if send_many is not None:
                try:
                    answers = send_many([e.body for e in entries])
                except SDKError as exc:
                    if _retry_later(exc.status, exc):
                        return self._stopped(out, entries[0], exc)
            if answers is None:
                answers = self._send_each(entries, send)
            done: list[tuple[SpoolEntry, dict]] = []
            dead: list[tuple[SpoolEntry, int | None, str]] = []
            stop: tuple[SpoolEntry, SDKError] | None = None
            for entry, answer in zip(entries, answers, strict=False):
                status = answer.get("status")
                if "result" in answer:
                    done.append((entry, answer["result"]))
                elif _retry_later(status, answer.get("error")):
                    stop = (entry, answer.get("error") or SDKError(_text(answer), status=status))
                    break
                else:
                    dead.append((entry, status, _text(answer)))
            self._settle(done, dead)
            out.sent += len(done)
            out.dead += len(dead)
            if on_sent is not None:
                for entry, result in done:
                    on_sent(entry.body, result)
            if stop is not None:
                return self._stopped(out, *stop)

    @staticmethod
    def _send_each(entries: list[SpoolEntry], send: Callable[[dict], dict]) -> list[dict]:
        """One request per entry, until one must be retried later (the rest is not sent)."""
        answers: list[dict] = []
        for entry in entries:
            try:
                answers.append({"status": 200, "result": send(entry.body)})
            except SDKError as exc:
                answers.append({"status": exc.status, "error": exc})
                if _retry_later(exc.status, exc):
                    break
        return answers

    def _settle(self, done: list, dead: list) -> None:
        """Remove what was stored and move what was refused to the dead letters, at once."""
        if not done and not dead:
            return
        now = self.clock()
        with self._tx() as db:
            for entry, status, error in dead:
                db.execute(
                    "INSERT INTO dead_letter (idempotency_key, body, created_at, failed_at, "
                    "status, error) SELECT idempotency_key, body, created_at, ?, ?, ? FROM spool "
                    "WHERE id = ?",
                    (now, status, error[:2000], entry.id),
                )
            db.executemany("DELETE FROM spool WHERE id = ?", [(e.id,) for e, *_ in [*done, *dead]])

    def _stopped(self, out: ReplayResult, entry: SpoolEntry, exc: SDKError) -> ReplayResult:
        self.record_failure(entry, str(exc))
        out.error = exc
        out.remaining = self.depth()
        return out

    # --- the query cache ------------------------------------------------------------------------

    def cache_put(self, query: str, items: list[dict]) -> None:
        """Keep ``items`` as the last answer to ``query`` (any stable text, e.g. its JSON)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO query_cache (query, results, answered_at) VALUES (?, ?, ?)",
                (query, json.dumps(items, separators=(",", ":")), self.clock()),
            )

    def cache_get(self, query: str) -> tuple[list[dict], float] | None:
        """The last answer to ``query`` and when it came (epoch seconds), each item's
        ``freshness`` recomputed for now; None if that query was never answered."""
        with self._lock:
            row = self._db.execute(
                "SELECT results, answered_at FROM query_cache WHERE query = ?", (query,)
            ).fetchone()
        if row is None:
            return None
        answered_at = row[1]
        now = self.clock()
        return [self._refresh(i, answered_at, now) for i in json.loads(row[0])], answered_at

    def _refresh(self, item: dict, answered_at: float, now: float) -> dict:
        """``exp(-age/decay)`` at ``now``. The decay is the type's from ``decays``; else it is
        read back from the freshness the exchange gave at ``answered_at`` (exp is one-to-one);
        else the server's default."""
        try:
            observed = datetime.fromisoformat(str(item["observed_at"])).timestamp()
        except (KeyError, ValueError):
            return item
        decay = self.decays.get(str(item.get("knowledge_type")))
        if decay is None:
            given = item.get("freshness")
            age_then = answered_at - observed
            if isinstance(given, int | float) and 0.0 < given < 0.999 and age_then > 0:
                decay = age_then / -math.log(given)
            else:
                decay = DEFAULT_DECAY_SECONDS
        fresh = math.exp(-max(now - observed, 0.0) / decay)
        return {**item, "freshness": round(fresh, 6)}


class _Transaction:
    """``with spool._tx() as db``: BEGIN IMMEDIATE ... COMMIT under the spool's lock."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self.db = db
        self.lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, exc_type, *_: Any) -> None:
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()


def _retry_later(status: int | None, exc: object = None) -> bool:
    """Keep the entry and stop: unreachable, 5xx, a token to fix, or "not now" (408/409/429)."""
    return (
        status is None or status >= 500 or status in (401, 403) or status in RETRY_LATER_STATUSES
    ) or isinstance(exc, AuthError)


def _text(answer: dict) -> str:
    if answer.get("error") is not None:
        return str(answer["error"])
    return f"HTTP {answer.get('status')}: {json.dumps(answer.get('errors'))}"


def _chunks(seq: list, size: int):
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Inspect a worker's spool.")
    parser.add_argument("path")
    parser.add_argument("--requeue", action="store_true", help="put the dead letters back")
    args = parser.parse_args(argv)
    if not Path(args.path).exists():
        parser.error(f"no spool at {args.path}")
    spool = Spool(args.path)
    try:
        if args.requeue:
            print(json.dumps({"requeued": spool.requeue_dead_letters()}))
        print(
            json.dumps(
                {
                    **spool.status(),
                    "entries": [
                        {"idempotency_key": e.idempotency_key, "attempts": e.attempts}
                        for e in spool.entries(20)
                    ],
                    "dead": spool.dead_letters(),
                },
                indent=2,
            )
        )
    finally:
        spool.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
