"""The relay's fan-out checks an event once per group of connections with the same filter
(any viewer), and still delivers to each connection exactly what its own filter matches."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from knowledge.events import FeedFilter
from knowledge.models import Event
from knowledge.relay import Connection, Relay, _relays

KINDS = ["knowledge_broadcast", "conflict_detected", "knowledge_resolved"]
TYPES = ["risk_pattern", "issue_pattern", "learned_pattern", ""]
WORKERS = ["think", "learning", "analysis", "dream", "bench"]


@pytest.fixture
def relay():
    loop = asyncio.new_event_loop()
    relay = Relay(loop)
    yield relay
    _relays.discard(relay)
    loop.close()


def connect(relay, viewer, flt) -> Connection:
    conn = Connection(label=f"worker:{viewer}", viewer=viewer, max_queue=100_000)
    conn.filter, conn.live = flt, True
    relay.connections.add(conn)
    return conn


def delivered(conn) -> list[int]:
    return [json.loads(text)["seq"] for text in conn.queue]


def random_event(rng, seq) -> Event:
    targeted = rng.random() < 0.3
    return Event(
        seq=seq,
        kind=rng.choice(KINDS),
        knowledge_type=rng.choice(TYPES),
        source=rng.choice(WORKERS),
        data={"workers": rng.sample(WORKERS, 2)},
        is_targeted=targeted,
        targets=rng.sample(WORKERS, rng.randint(0, 2)) if targeted else [],
    )


def some(rng, values) -> frozenset:
    return frozenset(v for v in values if v and rng.random() < 0.4)


def test_every_connection_gets_exactly_what_its_own_filter_matches(relay):
    rng = random.Random(7)
    filters = [  # few distinct subscriptions, many viewers: groups of several connections
        (
            some(rng, KINDS),
            some(rng, TYPES),
            some(rng, WORKERS),
            rng.choice([None, some(rng, TYPES)]),
        )
        for _ in range(6)
    ]
    conns = []
    for _ in range(120):
        kinds, types, sources, read_types = rng.choice(filters)
        viewer = rng.choice(WORKERS)
        flt = FeedFilter(kinds, types, sources, viewer=viewer, read_types=read_types)
        conns.append(connect(relay, viewer, flt))
    events = [random_event(rng, seq) for seq in range(1, 401)]
    relay._fan_out(events, 400)
    for conn in conns:
        assert delivered(conn) == [e.seq for e in events if conn.filter.matches(e)]
    assert sum(len(c.queue) for c in conns) > 0


class CountingFilter(FeedFilter):
    """Counts the relay's checks (the filter's own rules unchanged)."""

    checks = 0

    def selects(self, event):
        CountingFilter.checks += 1
        return super().selects(event)

    def matches(self, event):
        CountingFilter.checks += 1
        return super().matches(event)


def test_a_batch_no_socket_wants_costs_one_check_per_event_not_per_socket(relay):
    # 1,000 sockets of 1,000 workers following the bench's events; the fleet writes 500 others
    conns = [
        connect(relay, f"w{i}", CountingFilter(sources=frozenset({"bench"}), viewer=f"w{i}"))
        for i in range(1000)
    ]
    fleet = [
        Event(seq=s, kind="knowledge_broadcast", knowledge_type="issue_pattern", source="analysis")
        for s in range(1, 501)
    ]
    CountingFilter.checks = 0
    relay._fan_out(fleet, 500)
    assert CountingFilter.checks <= len(fleet)  # was 500,000: one per event per socket
    # and the one event they want still reaches every one of them
    relay._fan_out([Event(seq=501, kind="knowledge_broadcast", source="bench")], 501)
    assert all(delivered(c) == [501] for c in conns)
