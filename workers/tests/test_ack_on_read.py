"""BaseWorker acks each processed page on its next read (one call, at most one commit per
page; issue 12's reception overhead), keeping at-least-once delivery: a worker that dies
before that read gets the page again, one that stops acks it on the way out."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conflicts.actions import do_resolve
from conftest import risk_payload
from identity.models import Worker
from knowledge.actions import do_clear_state
from knowledge.models import Event, InboxCursor
from knowledge.tests.test_inbox_lean import commits
from kx_sdk import BaseWorker
from workers.inprocess import InProcessTransport

# The SDK reads its inbox: committed events only (docs/decisions/event-log-ordering.md,
# "The test-time rule").
pytestmark = pytest.mark.django_db(transaction=True)

ISSUE = {"rule": "r", "location": "a.py::f", "severity": "low"}


class Collector(BaseWorker):
    interval = 0.0

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.seen: list[str] = []

    def update_issue_detection(self, items):
        self.seen += [i["payload"]["location"] for i in items]


def send(sender, *locations):
    for location in locations:
        sender.broadcast("issue_pattern", {**ISSUE, "location": location}, 0.9)


def position(persona) -> int:
    return InboxCursor.objects.get(worker=persona.worker).position


def test_a_page_is_acked_by_the_next_read_in_one_commit(analysis, think):
    sender = Collector(InProcessTransport(analysis.worker))
    reader = Collector(InProcessTransport(think.worker))
    send(sender, "a.py::f")
    reader.receive()
    acked_before = position(think)
    send(sender, "b.py::f")
    with CaptureQueriesContext(connection) as ctx:
        reader.receive()
    sqls = [q["sql"] for q in ctx.captured_queries]
    # the look is skipped after news; one read acks page one and delivers page two
    selects = [s for s in sqls if s.lstrip().upper().startswith("SELECT")]
    assert commits(sqls) == 1 and len(selects) == 2, sqls
    assert reader.seen == ["a.py::f", "b.py::f"]
    assert position(think) > acked_before  # page one is acked, page two is not yet


def test_a_worker_that_dies_before_its_next_read_gets_the_page_again(analysis, think):
    sender = Collector(InProcessTransport(analysis.worker))
    send(sender, "a.py::f")
    first = Collector(InProcessTransport(think.worker))
    assert [i["payload"]["location"] for i in first.receive()] == ["a.py::f"]
    # the process dies here: its next read (the ack) never happens
    second = Collector(InProcessTransport(think.worker))
    assert [i["payload"]["location"] for i in second.receive()] == ["a.py::f"]
    send(sender, "b.py::f")
    assert [i["payload"]["location"] for i in second.receive()] == ["b.py::f"]
    assert Worker.objects.get(pk=think.worker.pk).received_count == 2  # counted once each


def test_a_worker_that_stops_acks_its_last_page(analysis, think):
    sender = Collector(InProcessTransport(analysis.worker))
    send(sender, "a.py::f")
    first = Collector(InProcessTransport(think.worker))
    first.run(max_cycles=1)
    assert first.seen == ["a.py::f"]
    assert position(think) == Event.objects.latest("seq").seq
    assert Collector(InProcessTransport(think.worker)).receive() == []


def test_a_refused_ack_does_not_fail_the_cycle(analysis, think):
    sender = Collector(InProcessTransport(analysis.worker))
    send(sender, "a.py::f")
    reader = Collector(InProcessTransport(think.worker))
    reader.receive()
    do_clear_state(think.worker, actor="staff")  # the inbox skips to the top meanwhile
    send(sender, "b.py::f")
    assert reader.run_cycle() is True
    assert reader.seen == ["a.py::f", "b.py::f"] and reader.stats.errors == 0


class OlderServer(InProcessTransport):
    """A server from before ``ack`` on reads: it ignores the parameter."""

    def receive(self, limit=100, *, ack=None, epoch=None):
        return super().receive(limit)


def test_a_server_that_ignores_the_ack_gets_explicit_acks(analysis, think):
    sender = Collector(InProcessTransport(analysis.worker))
    send(sender, "a.py::f")
    reader = Collector(OlderServer(think.worker))
    reader.receive()
    send(sender, "b.py::f")
    assert [i["payload"]["location"] for i in reader.receive()] == ["b.py::f"]
    assert reader.transport.ack_on_read is False
    assert reader.receive() == []  # page two was acked explicitly
    assert reader.seen == ["a.py::f", "b.py::f"]


def test_a_page_of_conflict_events_only_is_acked_by_the_next_cycle(think, analysis):
    # Given think read the item that contradicts its own, and the conflict it raised
    think.broadcast("risk_pattern", risk_payload(level="high"), 0.8)
    reader = Collector(InProcessTransport(think.worker))
    reader.receive()
    contradiction = analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.8).json()
    reader.receive()
    # When a person decides the conflict, think's next page holds conflict events only
    conflict_id = contradiction["conflicts"][0]
    do_resolve(conflict_id, "dismiss")
    conflict_events = reader.stats.conflict_events
    assert reader.receive() == [] and reader.stats.conflict_events > conflict_events
    # Then the next cycle acks that page, though nothing new came (it used to only look, and
    # the page stayed un-acked until news or stop)
    reader.receive()
    assert position(think) == Event.objects.latest("seq").seq
