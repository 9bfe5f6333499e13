"""The inbox read and ack are lean: a fixed handful of statements, whatever the page holds
(issue 12's reception overhead; docs/performance.md, "Inbox receive")."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conftest import issue_payload
from identity.models import Worker
from knowledge.actions import do_ack, read_inbox
from knowledge.models import InboxCursor, Subscription

pytestmark = pytest.mark.django_db


def statements(fn):
    with CaptureQueriesContext(connection) as ctx:
        result = fn()
    # savepoints (the test's own transaction around an atomic block) are not statements
    sqls = [q["sql"] for q in ctx.captured_queries]
    return result, [s for s in sqls if not s.upper().startswith(("SAVEPOINT", "RELEASE"))]


def writes(sqls):
    return [s for s in sqls if s.lstrip().upper().startswith(("UPDATE", "INSERT", "WITH"))]


def test_read_and_ack_take_a_fixed_number_of_statements(analysis, think):
    for i in range(30):
        analysis.broadcast("issue_pattern", issue_payload(location=f"m{i}.py::f"))
    read_inbox(think.worker)  # the first read creates the cursor
    page, sqls = statements(lambda: read_inbox(think.worker, limit=100))
    assert len(page.events) == 30
    # state (cursor + subscription), log position (2), events; nothing new was delivered
    assert len(sqls) == 4, sqls
    assert writes(sqls) == []

    cursor, sqls = statements(lambda: do_ack(think.worker, page.ack))
    assert cursor.position == page.ack
    assert len(writes(sqls)) == 1 and len(sqls) == 3, sqls  # log position (2) + one UPDATE

    analysis.broadcast("issue_pattern", issue_payload(location="new.py::f"))
    page, sqls = statements(lambda: read_inbox(think.worker, limit=100))
    assert len(page.events) == 1
    # the delivery mark and the received count: one statement on PostgreSQL
    assert len(writes(sqls)) == (1 if connection.vendor == "postgresql" else 2), sqls
    assert len(sqls) == 4 + len(writes(sqls))
    think.worker.refresh_from_db()
    assert think.worker.received_count == 31
    assert InboxCursor.objects.get(worker=think.worker).delivered == page.events[-1].seq


def test_reading_creates_the_cursor_but_no_subscription(analysis, think):
    analysis.broadcast("issue_pattern", issue_payload())
    Subscription.objects.filter(worker=think.worker).delete()
    InboxCursor.objects.filter(worker=think.worker).delete()
    page = read_inbox(think.worker)
    assert [e.data["item"]["knowledge_type"] for e in page.events] == ["issue_pattern"]
    cursor = InboxCursor.objects.get(worker=think.worker)
    assert (cursor.position, cursor.delivered) == (page.position, page.events[-1].seq)
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
