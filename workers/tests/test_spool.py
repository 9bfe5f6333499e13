"""The SDK's durable spool on its own: bounds, order, dead letters, the query cache, kill -9."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from kx_sdk.errors import AuthError, SDKError, TransportError
from kx_sdk.spool import Spool, SpoolFullError, main

DAY = 86400.0


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def body(n: int, key: str | None = None) -> dict:
    return {
        "knowledge_type": "risk_pattern",
        "payload": {"pattern": f"p{n}", "risk_level": "high"},
        "confidence": 0.5,
        "idempotency_key": key or f"k{n}",
    }


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def spool(tmp_path, clock):
    s = Spool(tmp_path / "w.spool.sqlite3", max_entries=5, clock=clock)
    yield s
    s.close()


def test_entries_come_back_in_order_after_a_reopen_and_a_key_is_kept_once(spool, tmp_path):
    for n in (3, 1, 2):
        assert spool.put(body(n)) is True
    assert spool.put(body(99, key="k1")) is False  # a restarted worker resending k1
    spool.close()
    again = Spool(tmp_path / "w.spool.sqlite3")
    assert [e.idempotency_key for e in again.entries()] == ["k3", "k1", "k2"]
    assert again.entries()[1].body["payload"]["pattern"] == "p1"
    assert again.depth() == 3
    again.close()


def test_a_body_without_its_key_is_refused(spool):
    with pytest.raises(ValueError):
        spool.put({"knowledge_type": "risk_pattern"})


def test_a_full_spool_refuses_new_entries_and_drops_nothing(spool):
    for n in range(5):
        spool.put(body(n))
    with pytest.raises(SpoolFullError) as caught:
        spool.put(body(5))
    assert isinstance(caught.value, SDKError)
    assert "full" in str(caught.value) and "nothing spooled earlier was dropped" in str(
        caught.value
    )
    assert [e.idempotency_key for e in spool.entries()] == [f"k{n}" for n in range(5)]


def test_the_byte_bound_refuses_a_whole_batch_and_keeps_none_of_it(tmp_path, clock):
    one = len(json.dumps(body(0), sort_keys=True, separators=(",", ":")))
    spool = Spool(tmp_path / "b.sqlite3", max_bytes=one * 3, clock=clock)
    spool.put_many([body(0), body(1)])
    with pytest.raises(SpoolFullError):
        spool.put_many([body(2), body(3)])
    assert spool.depth() == 2
    assert spool.put_many([body(2)]) == 1
    spool.close()


def test_status_reports_depth_oldest_age_and_dead_letters(spool, clock):
    assert spool.status() == {"depth": 0, "oldest_age_seconds": 0.0, "dead_letters": 0}
    spool.put(body(0))
    clock.now += 30
    spool.put(body(1))
    clock.now += 12.5
    assert spool.status() == {"depth": 2, "oldest_age_seconds": 42.5, "dead_letters": 0}


class Exchange:
    """A fake exchange that answers per idempotency key (only the network is faked)."""

    def __init__(self, answers: dict[str, SDKError] | None = None):
        self.answers = answers or {}
        self.stored: list[str] = []

    def broadcast(self, b: dict) -> dict:
        error = self.answers.get(b["idempotency_key"])
        if error is not None:
            raise error
        self.stored.append(b["idempotency_key"])
        return {"item": {"id": len(self.stored)}, "outcome": "created", "replayed": False}


def test_replay_sends_in_order_and_a_4xx_goes_to_the_dead_letters(spool):
    for n in range(4):
        spool.put(body(n))
    exchange = Exchange({"k1": SDKError("payload.risk_level: bad", status=400, field="payload")})
    sent = []
    result = spool.replay(exchange.broadcast, on_sent=lambda b, r: sent.append(r["item"]["id"]))
    assert exchange.stored == ["k0", "k2", "k3"] and sent == [1, 2, 3]
    assert (result.sent, result.dead, result.remaining, result.error) == (3, 1, 0, None)
    [dead] = spool.dead_letters()
    assert dead["idempotency_key"] == "k1" and dead["status"] == 400
    assert "payload.risk_level" in dead["error"] and dead["body"]["payload"]["pattern"] == "p1"
    assert spool.status()["dead_letters"] == 1 and spool.depth() == 0


@pytest.mark.parametrize(
    "error",
    [
        TransportError("connection refused"),
        SDKError("the database is unavailable", status=503),
        SDKError("slow down", status=429),
        AuthError("bad token", status=401),
    ],
    ids=["refused", "503", "429", "401"],
)
def test_replay_stops_at_an_unreachable_exchange_and_keeps_the_order(spool, error):
    for n in range(3):
        spool.put(body(n))
    exchange = Exchange({"k1": error})
    result = spool.replay(exchange.broadcast)
    assert exchange.stored == ["k0"]
    assert result.error is error and result.remaining == 2 and result.dead == 0
    assert [(e.idempotency_key, e.attempts) for e in spool.entries()] == [("k1", 1), ("k2", 0)]
    del exchange.answers["k1"]
    assert spool.replay(exchange.broadcast).sent == 2
    assert exchange.stored == ["k0", "k1", "k2"]


class BulkExchange(Exchange):
    """``broadcast_many`` as the bulk endpoint answers: one status per body."""

    def __init__(self, answers=None, whole: SDKError | None = None):
        super().__init__(answers)
        self.whole = whole
        self.bulks: list[int] = []

    def broadcast_many(self, bodies: list[dict]) -> list[dict]:
        self.bulks.append(len(bodies))
        if self.whole is not None:
            raise self.whole
        out = []
        for n, b in enumerate(bodies):
            try:
                out.append({"index": n, "status": 201, "result": self.broadcast(b)})
            except SDKError as exc:
                out.append({"index": n, "status": exc.status, "errors": {"payload": [exc.message]}})
        return out


def test_a_bulk_replay_sends_batches_and_dead_letters_the_refused(spool):
    for n in range(5):
        spool.put(body(n))
    exchange = BulkExchange({"k2": SDKError("bad", status=400)})
    result = spool.replay(exchange.broadcast, send_many=exchange.broadcast_many, batch=3)
    assert exchange.bulks == [3, 2] and exchange.stored == ["k0", "k1", "k3", "k4"]
    assert (result.sent, result.dead, result.remaining, result.error) == (4, 1, 0, None)
    [dead] = spool.dead_letters()
    assert dead["idempotency_key"] == "k2" and dead["status"] == 400 and "bad" in dead["error"]


def test_a_bulk_replay_stops_at_an_item_the_exchange_could_not_store(spool):
    for n in range(4):
        spool.put(body(n))
    exchange = BulkExchange({"k1": SDKError("the database is unavailable", status=503)})
    result = spool.replay(exchange.broadcast, send_many=exchange.broadcast_many)
    assert result.error is not None and result.error.status == 503
    # k0 stored and removed; k1 and everything after it stay (k2, k3 are resent later: 200).
    assert [e.idempotency_key for e in spool.entries()] == ["k1", "k2", "k3"]
    assert spool.dead_letters() == []


def test_a_bulk_refused_whole_is_sent_one_by_one_and_an_unreachable_one_stops(spool):
    for n in range(3):
        spool.put(body(n))
    exchange = BulkExchange(whole=TransportError("connection refused"))
    assert spool.replay(exchange.broadcast, send_many=exchange.broadcast_many).remaining == 3
    assert exchange.stored == []
    exchange.whole = SDKError("request body too large", status=413)
    result = spool.replay(exchange.broadcast, send_many=exchange.broadcast_many)
    assert result.sent == 3 and exchange.stored == ["k0", "k1", "k2"] and spool.depth() == 0


def test_dead_letters_can_be_requeued_at_the_end(spool):
    spool.put(body(0))
    spool.put(body(1))
    spool.replay(Exchange({"k0": SDKError("no", status=422)}).broadcast)
    spool.put(body(2))
    assert spool.requeue_dead_letters() == 1
    assert [e.idempotency_key for e in spool.entries()] == ["k2", "k0"]
    assert spool.dead_letters() == []


def item(kind: str, observed: datetime, answered: datetime, decay: float) -> dict:
    fresh = math.exp(-(answered - observed).total_seconds() / decay)
    return {
        "id": 1,
        "knowledge_type": kind,
        "observed_at": observed.isoformat(),
        "freshness": round(fresh, 6),
    }


def test_the_query_cache_recomputes_freshness_from_the_decay(tmp_path, clock):
    answered = datetime.fromtimestamp(clock.now, UTC)
    observed = answered - timedelta(days=1)
    spool = Spool(tmp_path / "c.sqlite3", clock=clock, decays={"decision_outcome": 2 * DAY})
    spool.cache_put(
        "q",
        [
            item("risk_pattern", observed, answered, 3 * DAY),  # decay read back from freshness
            item("decision_outcome", observed, answered, 2 * DAY),  # decay given
            {"id": 3, "knowledge_type": "x", "observed_at": answered.isoformat(), "freshness": 1.0},
        ],
    )
    clock.now += 2 * DAY
    items, answered_at = spool.cache_get("q")
    assert answered_at == answered.timestamp()
    assert items[0]["freshness"] == pytest.approx(math.exp(-1.0), abs=1e-4)  # 3 days old / 3
    assert items[1]["freshness"] == pytest.approx(math.exp(-1.5), abs=1e-6)  # 3 days old / 2
    assert items[2]["freshness"] == pytest.approx(math.exp(-2 / 7), abs=1e-6)  # default decay
    assert spool.cache_get("never asked") is None
    spool.close()


def test_an_entry_is_on_disk_when_put_returns_even_under_kill_9(tmp_path):
    path = tmp_path / "k.sqlite3"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from kx_sdk.spool import Spool
        spool = Spool({str(path)!r})
        for n in range(50):
            spool.put({{"idempotency_key": f"k{{n}}", "payload": {{"n": n}}}})
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd(), timeout=60)
    assert proc.returncode == -signal.SIGKILL
    spool = Spool(path)
    assert [e.body["payload"]["n"] for e in spool.entries(100)] == list(range(50))
    spool.close()


def test_the_inspection_command_prints_status_and_dead_letters(spool, capsys):
    spool.put(body(0))
    spool.put(body(1))
    spool.replay(Exchange({"k0": SDKError("bad", status=400)}).broadcast)
    spool.put(body(2))
    assert main([str(spool.path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["depth"] == 1 and shown["dead_letters"] == 1
    assert shown["dead"][0]["idempotency_key"] == "k0"
    assert main([str(spool.path), "--requeue"]) == 0
    assert spool.depth() == 2
