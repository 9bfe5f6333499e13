"""The inbox read and ack are lean: a fixed handful of statements and at most one commit per
page, whatever the page holds (issue 12's reception overhead; docs/performance.md, "Inbox
receive")."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conftest import issue_payload
from identity.models import Worker
from knowledge.actions import do_ack, read_inbox
from knowledge.events import log_position
from knowledge.inbox import inbox_state
from knowledge.models import InboxCursor, Subscription

# Readers see committed events only: the tests publish in committed transactions
# (docs/decisions/event-log-ordering.md, "The test-time rule").
pytestmark = pytest.mark.django_db(transaction=True)


def statements(fn):
    with CaptureQueriesContext(connection) as ctx:
        result = fn()
    return result, [q["sql"] for q in ctx.captured_queries]


def is_write(sql: str) -> bool:
    head = sql.lstrip().upper()
    if head.startswith("WITH"):  # a writing CTE, not the snapshot horizon's read
        return any(verb in head for verb in ("UPDATE ", "INSERT ", "DELETE "))
    return head.startswith(("UPDATE", "INSERT"))


def commits(sqls) -> int:
    """Write transactions: each write statement outside an atomic block commits alone (the
    connection is in autocommit); an atomic block commits once, whatever it holds: a
    savepoint (inside another transaction) or, at the top level, a transaction that ends
    with a logged COMMIT (SQLite)."""
    n, depth, block_writes = 0, 0, False
    top_level = any(sql.strip().upper() == "COMMIT" for sql in sqls)
    pending = 0  # writes of a top-level transaction not committed yet
    for sql in sqls:
        head = sql.lstrip().upper()
        if head.startswith("SAVEPOINT"):
            depth, block_writes = depth + 1, block_writes if depth else False
        elif head.startswith("RELEASE"):
            depth -= 1
            n += depth == 0 and block_writes
        elif head.strip() == "COMMIT":
            n, pending = n + (pending > 0), 0
        elif is_write(sql):
            if depth:
                block_writes = True
            elif top_level:
                pending += 1
            else:
                n += 1
    return n + (pending > 0)


def reads(sqls):
    return [s for s in sqls if s.lstrip().upper().startswith("SELECT")]


def received(persona) -> int:
    return Worker.objects.get(pk=persona.worker.pk).received_count


def test_a_read_is_two_statements_and_writes_nothing_new(analysis, think):
    for i in range(30):
        analysis.broadcast("issue_pattern", issue_payload(location=f"m{i}.py::f"))
    read_inbox(think.worker)  # the first read creates the cursor
    page, sqls = statements(lambda: read_inbox(think.worker, limit=100))
    assert len(page.events) == 30
    # one statement for cursor + subscription + log position, one for the events; the page
    # was already offered: nothing to write
    assert len(sqls) == 2 and commits(sqls) == 0, sqls
    assert received(think) == 30


def test_a_read_with_ack_acks_and_delivers_in_one_commit(analysis, think):
    for i in range(3):
        analysis.broadcast("issue_pattern", issue_payload(location=f"a{i}.py::f"))
    first = read_inbox(think.worker)
    for i in range(2):
        analysis.broadcast("issue_pattern", issue_payload(location=f"b{i}.py::f"))
    page, sqls = statements(lambda: read_inbox(think.worker, ack=first.ack, epoch=first.epoch))
    assert [e.data["item"]["payload"]["location"] for e in page.events] == ["b0.py::f", "b1.py::f"]
    assert page.position == first.ack
    # state, events, and one write: the ack, the offered mark, the received count (one
    # statement on PostgreSQL; two in one transaction on SQLite)
    assert len(reads(sqls)) == 2 and commits(sqls) == 1, sqls
    assert [is_write(s) for s in sqls].count(True) == (
        1 if connection.vendor == "postgresql" else 2
    )
    cursor = InboxCursor.objects.get(worker=think.worker)
    assert (cursor.position, cursor.delivered) == (first.ack, page.ack)
    assert cursor.acked_at is not None
    assert received(think) == 5

    # the last page acked on a read that finds nothing: one statement, one commit
    last, sqls = statements(lambda: read_inbox(think.worker, ack=page.ack, epoch=page.epoch))
    assert last.events == [] and last.position == page.ack
    assert len(sqls) == 2 and commits(sqls) == 1, sqls


def test_an_ack_on_read_moves_the_cursor_once(analysis, think):
    for i in range(4):
        analysis.broadcast("issue_pattern", issue_payload(location=f"m{i}.py::f"))
    first = read_inbox(think.worker, limit=2)
    second = read_inbox(think.worker, limit=2, ack=first.ack)
    # the same read again (a retry whose answer was lost): no write, the same page
    again, sqls = statements(lambda: read_inbox(think.worker, limit=2, ack=first.ack))
    assert commits(sqls) == 0, sqls
    assert [e.seq for e in again.events] == [e.seq for e in second.events]
    assert InboxCursor.objects.get(worker=think.worker).position == first.ack
    assert received(think) == 4  # each event counted once, however often it was offered


@pytest.mark.django_db(transaction=True)  # the snapshot horizon needs committed events
def test_the_state_statement_reads_the_log_position(analysis, think, event_ordering):
    for i in range(3):
        analysis.broadcast("issue_pattern", issue_payload(location=f"m{i}.py::f"))
    assert inbox_state(think.worker).log == log_position()
    page = read_inbox(think.worker)
    assert len(page.events) == 3 and page.ack == page.top == log_position().top


def test_an_explicit_ack_is_one_statement_after_the_log_position(analysis, think):
    analysis.broadcast("issue_pattern", issue_payload())
    page = read_inbox(think.worker)
    cursor, sqls = statements(lambda: do_ack(think.worker, page.ack))
    assert cursor.position == page.ack
    assert commits(sqls) == 1 and len(sqls) == 3, sqls  # log position (2) + one UPDATE


def test_reading_creates_the_cursor_but_no_subscription(analysis, think):
    analysis.broadcast("issue_pattern", issue_payload())
    Subscription.objects.filter(worker=think.worker).delete()
    InboxCursor.objects.filter(worker=think.worker).delete()
    page = read_inbox(think.worker)
    assert [e.data["item"]["knowledge_type"] for e in page.events] == ["issue_pattern"]
    cursor = InboxCursor.objects.get(worker=think.worker)
    assert (cursor.position, cursor.delivered) == (page.position, page.ack)
    assert not Subscription.objects.filter(worker=think.worker).exists()
    assert Worker.objects.get(pk=think.worker.pk).received_count == 1


def test_ack_never_moves_back_and_creates_a_missing_cursor(analysis, think):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::f"))
    InboxCursor.objects.filter(worker=think.worker).delete()
    page = read_inbox(think.worker)
    InboxCursor.objects.filter(worker=think.worker).delete()
    assert do_ack(think.worker, page.ack).position == page.ack  # created by the ack
    assert do_ack(think.worker, page.ack - 1).position == page.ack  # never backwards
    stored = InboxCursor.objects.get(worker=think.worker)
    assert stored.position == page.ack and stored.acked_at is not None
    assert read_inbox(think.worker).events == []
