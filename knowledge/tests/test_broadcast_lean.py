"""A single broadcast is a fixed handful of plain statements (issue 14: its service time is
the 8-client P95; docs/performance.md, "Single broadcast").

The common case, a new item on a subject nobody else has claimed, with an idempotency key:
one look for the key, the worker row, the source's own items, the item, the subject's lock
(or the tail lock), one busy check for conflict detection, the event, the key's record.
No statement for conflict detection's reads of the subject's items and conflicts (the busy
check answers "nothing there")."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conflicts.actions import copy_estimator
from conftest import issue_payload
from knowledge.actions import BroadcastInput, do_broadcast
from knowledge.events import snapshot_ordering

pytestmark = pytest.mark.django_db


def statements(fn):
    with CaptureQueriesContext(connection) as ctx:
        result = fn()
    return result, [q["sql"] for q in ctx.captured_queries]


def new_item(location: str, key: str | None = None) -> BroadcastInput:
    return BroadcastInput(
        "issue_pattern", issue_payload(location=location), 0.7, idempotency_key=key
    )


def expected_statements() -> int:
    """The plan above, per database and ordering (the action's own savepoint and release
    included: the test runs inside a transaction)."""
    n = 2 + 8  # savepoint + release; key, worker, own items, item, busy, event, record + lock
    if connection.vendor != "postgresql":
        return n - 1  # SQLite serialises writers: no advisory lock
    if snapshot_ordering():
        return n + 3  # the event in its own savepoint, its seq drawn first (xid after seq)
    return n + 1  # publish_event takes the (re-entrant) tail lock again


def test_a_single_broadcast_on_a_new_subject_is_a_fixed_handful_of_statements(
    analysis, event_ordering
):
    copy_estimator()  # built on first use, once per process: not part of a broadcast
    do_broadcast(analysis.worker, new_item("warm/up.py::f", "k0"))

    result, sqls = statements(lambda: do_broadcast(analysis.worker, new_item("a.py::f", "k1")))

    assert result.outcome == "created" and result.conflict_ids == []
    assert len(sqls) == expected_statements(), "\n".join(sqls)


def test_a_busy_subject_still_gets_the_full_detection(analysis, think):
    do_broadcast(think.worker, new_item("a.py::f"))
    other = BroadcastInput("issue_pattern", issue_payload(location="a.py::f", severity="low"), 0.7)
    result = do_broadcast(analysis.worker, other)
    assert len(result.conflict_ids) == 1


def test_a_retry_with_the_same_key_replays_the_first_result(analysis):
    first = do_broadcast(analysis.worker, new_item("a.py::f", "k1"))
    again = do_broadcast(analysis.worker, new_item("a.py::f", "k1"))
    assert again.replayed and again.item.pk == first.item.pk and again.outcome == "created"
