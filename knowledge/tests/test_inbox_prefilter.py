"""The inbox's SQL prefilter keeps exactly what the inbox filter wants, across many pages."""

from __future__ import annotations

import pytest

from conftest import issue_payload, risk_payload
from knowledge.actions import do_ack, read_inbox

# Readers see committed events only: the tests publish in committed transactions
# (docs/decisions/event-log-ordering.md, "The test-time rule").
pytestmark = pytest.mark.django_db(transaction=True)


def test_inbox_gets_wanted_types_and_targeted_items_through_a_long_log(think, analysis, recall):
    # think is interested in issue_pattern and risk_pattern, not in knowledge_retrieval.
    for i in range(30):
        recall.broadcast("knowledge_retrieval", {"query": f"q{i}", "hit_rate": 0.5})
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    think.broadcast("risk_pattern", risk_payload())  # its own: not in its inbox
    recall.broadcast(
        "knowledge_retrieval", {"query": "for think", "hit_rate": 0.9}, targets=["think"]
    )
    for i in range(30):
        recall.broadcast("knowledge_retrieval", {"query": f"r{i}", "hit_rate": 0.5})
    analysis.broadcast("risk_pattern", risk_payload(pattern="other"))

    got = []
    while True:
        page = read_inbox(think.worker, limit=2)
        got += [(e.kind, e.data["item"]["subject"]) for e in page.events]
        do_ack(think.worker, page.ack)
        if page.ack >= page.top:
            break
    assert got == [
        ("knowledge_broadcast", "long_function | a.py::f"),
        ("knowledge_broadcast", "for think"),
        ("knowledge_broadcast", "other"),
    ]
