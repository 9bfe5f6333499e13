"""BaseWorker with a spool: broadcasts spooled while the exchange is unreachable and replayed in
order, the loop running on cached query results, the spool's status in the worker's state.

The exchange is a fake (only the remote network is faked); the real thing, with processes, a
private PostgreSQL and a TCP proxy, is in tests/faults/test_spool.py.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import pytest

from kx_sdk import BaseWorker, SDKError, Transport, TransportError
from kx_sdk.spool import Spool, SpoolFullError


class FakeExchange(Transport):
    """Stores broadcasts by idempotency key like the server; ``down`` makes every call fail as
    an unreachable exchange does (after the transport's retries)."""

    worker_name = "think"

    def __init__(self) -> None:
        self.down: SDKError | None = None
        self.stored: dict[str, dict] = {}
        self.calls: list[str] = []
        self.states: list[dict] = []
        self.items: list[dict] = []
        self.retries = 5

    def _check(self, what: str) -> None:
        self.calls.append(what)
        if self.down is not None:
            raise self.down

    def broadcast(self, body: dict) -> dict:
        self._check("broadcast")
        if body["payload"].get("bad"):
            raise SDKError("payload.bad: not allowed", status=400, field="payload")
        key = body["idempotency_key"]
        replayed = key in self.stored
        self.stored.setdefault(key, body)
        item = {"id": list(self.stored).index(key) + 1, "subject": body["payload"]["pattern"]}
        return {"item": item, "outcome": "created", "conflicts": [], "replayed": replayed}

    def broadcast_many(self, bodies):
        self._check("broadcast_many")
        return [
            {"index": n, "status": 201, "result": self.broadcast(b)} for n, b in enumerate(bodies)
        ]

    def query(self, filters: dict) -> dict:
        self._check("query")
        return {"results": list(self.items), "next": None}

    def receive(self, limit: int = 100) -> dict:
        self._check("receive")
        return {"results": [], "ack": 0, "position": 0, "top": 0, "next": None}

    def update_state(self, state: dict) -> dict:
        self._check("update_state")
        self.states.append(state)
        return {"state": state}


def risk(n: int | str, **extra) -> dict:
    return {"pattern": f"p{n}", "risk_level": "high", **extra}


@pytest.fixture
def exchange():
    return FakeExchange()


@pytest.fixture
def spool(tmp_path):
    s = Spool(tmp_path / "think.spool.sqlite3", max_entries=50)
    yield s
    s.close()


def make(exchange, spool, retry: float = 0.0, **kw) -> BaseWorker:
    return BaseWorker(exchange, spool=spool, spool_retry=retry, interval=0, **kw)


def test_an_unreachable_exchange_spools_the_broadcast_with_its_key(exchange, spool):
    worker = make(exchange, spool)
    exchange.down = TransportError("POST /api/knowledge/broadcast: connection refused")
    result = worker.broadcast("risk_pattern", risk(1), 0.5, idempotency_key="think:1")
    assert result["outcome"] == "spooled" and result["spooled"] is True
    assert result["idempotency_key"] == "think:1" and result["item"] is None
    [entry] = spool.entries()
    assert entry.idempotency_key == "think:1" and entry.body["payload"] == risk(1)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_is_spooled_too(exchange, spool, status):
    worker = make(exchange, spool)
    exchange.down = SDKError("unavailable", status=status)
    assert worker.broadcast("risk_pattern", risk(1), 0.5)["spooled"] is True


def test_a_4xx_is_the_callers_error_and_is_never_spooled(exchange, spool):
    worker = make(exchange, spool)
    with pytest.raises(SDKError) as caught:
        worker.broadcast("risk_pattern", risk(1, bad=True), 0.5, idempotency_key="k")
    assert caught.value.status == 400 and caught.value.safe_to_resend is False
    assert spool.depth() == 0


def test_replay_keeps_the_order_and_the_keys_when_the_exchange_answers_again(exchange, spool):
    worker = make(exchange, spool)
    worker.broadcast("risk_pattern", risk(0), 0.5, idempotency_key="k0")
    exchange.down = TransportError("timed out")
    for n in (1, 2):
        worker.broadcast("risk_pattern", risk(n), 0.5, idempotency_key=f"k{n}")
    assert list(exchange.stored) == ["k0"] and spool.depth() == 2
    exchange.down = None
    result = worker.broadcast("risk_pattern", risk(3), 0.5, idempotency_key="k3")
    assert list(exchange.stored) == ["k0", "k1", "k2", "k3"]  # the spool first, then the new
    assert result["item"]["id"] == 4 and spool.depth() == 0
    assert worker.stats.broadcast == 4  # replayed ones counted once they are stored
    assert exchange.retries == 5  # restored after the replay's single attempts


def test_a_restarted_worker_replays_what_its_predecessor_spooled(exchange, spool, tmp_path):
    exchange.down = TransportError("refused")
    make(exchange, spool).broadcast("risk_pattern", risk(1), 0.5, idempotency_key="k1")
    spool.close()
    exchange.down = None
    again = Spool(tmp_path / "think.spool.sqlite3")
    make(exchange, again).run_cycle()
    assert list(exchange.stored) == ["k1"] and again.depth() == 0
    again.close()


def test_while_offline_new_broadcasts_go_straight_to_the_spool(exchange, spool):
    worker = make(exchange, spool, retry=3600)
    exchange.down = TransportError("refused")
    for n in range(3):
        worker.broadcast("risk_pattern", risk(n), 0.5)
    assert exchange.calls == ["broadcast"]  # one try, then no call until the retry is due
    assert worker.offline and spool.depth() == 3


def test_a_full_spool_raises_and_keeps_what_it_holds(exchange, tmp_path):
    small = Spool(tmp_path / "small.sqlite3", max_entries=2)
    worker = make(exchange, small)
    exchange.down = TransportError("refused")
    worker.broadcast("risk_pattern", risk(0), 0.5)
    worker.broadcast("risk_pattern", risk(1), 0.5)
    with pytest.raises(SpoolFullError) as caught:
        worker.broadcast("risk_pattern", risk(2), 0.5, idempotency_key="k2")
    assert small.depth() == 2
    assert caught.value.idempotency_key == "k2" and caught.value.safe_to_resend is True
    assert "spool is full" in str(caught.value)
    small.close()


def test_a_bulk_is_spooled_whole_and_replayed(exchange, spool):
    worker = make(exchange, spool)
    exchange.down = SDKError("the database is unavailable", status=503)
    drafts = [
        {"knowledge_type": "risk_pattern", "payload": risk(n), "confidence": 0.5} for n in range(3)
    ]
    results = worker.broadcast_many(drafts, key=lambda b: b["payload"]["pattern"])
    assert [r["outcome"] for r in results] == ["spooled"] * 3
    exchange.down = None
    worker.run_cycle()
    assert list(exchange.stored) == ["p0", "p1", "p2"] and spool.depth() == 0


def test_a_refused_replay_is_a_dead_letter_in_the_reported_state(exchange, spool):
    worker = make(exchange, spool)
    exchange.down = TransportError("refused")
    worker.broadcast("risk_pattern", risk(0, bad=True), 0.5, idempotency_key="bad")
    worker.broadcast("risk_pattern", risk(1), 0.5, idempotency_key="good")
    exchange.down = None
    worker.run_cycle()
    assert list(exchange.stored) == ["good"]
    assert exchange.states[-1]["spool"] == {
        "depth": 0,
        "oldest_age_seconds": 0.0,
        "dead_letters": 1,
    }
    assert spool.dead_letters()[0]["status"] == 400
    assert "dead letters" in worker.stats.last_error


def test_the_loop_keeps_running_offline_and_reports_the_spool_when_back(exchange, spool):
    steps = []

    class Busy(BaseWorker):
        def step(self, **_):
            steps.append(self.broadcast("risk_pattern", risk(len(steps)), 0.5)["outcome"])

    worker = Busy(exchange, spool=spool, spool_retry=0, interval=0)
    exchange.down = TransportError("refused")
    assert worker.run_cycle() is True  # the inbox failed, the step still ran
    assert worker.run_cycle() is True
    assert steps == ["spooled", "spooled"] and exchange.states == []
    exchange.down = None
    assert worker.run_cycle() is True
    assert steps[-1] == "created"
    assert [b["payload"]["pattern"] for b in exchange.stored.values()] == ["p0", "p1", "p2"]
    assert exchange.states[-1]["spool"]["depth"] == 0


def test_queries_are_answered_from_the_last_results_with_freshness_recomputed(exchange, spool):
    worker = make(exchange, spool)
    observed = datetime.now(UTC) - timedelta(hours=6)
    decay = 86400.0
    exchange.items = [
        {
            "id": 1,
            "knowledge_type": "risk_pattern",
            "observed_at": observed.isoformat(),
            "freshness": round(math.exp(-6 * 3600 / decay), 6),
        }
    ]
    assert worker.query_knowledge(["risk_pattern"]) == exchange.items
    exchange.down = TransportError("refused")
    [cached] = worker.query_knowledge(["risk_pattern"])
    age = time.time() - observed.timestamp()
    assert cached["id"] == 1
    assert cached["freshness"] == pytest.approx(math.exp(-age / decay), abs=1e-4)
    with pytest.raises(SDKError) as caught:
        worker.query_knowledge(["learned_pattern"])  # never answered: nothing to serve
    assert caught.value.status == 503


def test_without_a_spool_an_unreachable_exchange_is_an_error_as_before(exchange):
    worker = BaseWorker(exchange, interval=0)
    exchange.down = TransportError("refused")
    with pytest.raises(TransportError) as caught:
        worker.broadcast("risk_pattern", risk(1), 0.5)
    assert caught.value.safe_to_resend is True
    assert worker.run_cycle() is False
