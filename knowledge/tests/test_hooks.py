"""The broadcast pipeline's hook (knowledge/hooks.py): conflicts plug in through one
receiver (the core imports nothing from conflicts: config/tests/test_layers.py), a receiver
sees each stored item's outcome, and a receiver that refuses an item rejects it alone."""

from __future__ import annotations

import pytest

from conflicts.actions import detect_conflicts
from conftest import issue_payload
from knowledge import hooks
from knowledge.errors import ActionError
from knowledge.models import Event, KnowledgeItem


def test_conflicts_detection_is_connected_to_the_hook():
    assert detect_conflicts in hooks._receivers


@pytest.fixture
def refuse_subject():
    """A receiver (as another app would connect one) that refuses one subject."""
    refused: list[str] = []

    def receiver(batch):
        for stored in batch:
            if stored.item.subject in refused:
                raise ActionError("refused by a receiver", "payload", 409)

    hooks.connect_items_stored(receiver)
    yield refused
    hooks.disconnect_items_stored(receiver)


@pytest.mark.django_db
def test_a_receiver_refusing_one_item_of_a_bulk_rejects_it_alone(analysis, refuse_subject):
    refuse_subject.append("long_function | bad.py::f")
    items = [
        {
            "knowledge_type": "issue_pattern",
            "payload": issue_payload(location=loc),
            "confidence": 0.7,
        }
        for loc in ("a.py::f", "bad.py::f", "c.py::h")
    ]
    r = analysis.client.post("/api/knowledge/broadcast/bulk", {"items": items}, format="json")
    body = r.json()
    assert r.status_code == 200
    assert [x["status"] for x in body["results"]] == [201, 409, 201]
    assert body["results"][1]["errors"] == {"payload": ["refused by a receiver"]}
    assert sorted(KnowledgeItem.objects.values_list("subject", flat=True)) == [
        "long_function | a.py::f",
        "long_function | c.py::h",
    ]
    assert Event.objects.filter(kind="knowledge_broadcast").count() == 2


@pytest.mark.django_db
def test_a_receiver_sees_the_outcome_and_the_item_it_replaced(analysis):
    seen = []

    def receiver(batch):
        seen.extend((s.outcome, s.item.pk, s.previous.pk if s.previous else None) for s in batch)

    hooks.connect_items_stored(receiver)
    try:
        first = analysis.broadcast("issue_pattern", issue_payload(severity="high")).json()
        analysis.broadcast("issue_pattern", issue_payload(severity="high"))
        revised = analysis.broadcast("issue_pattern", issue_payload(severity="low")).json()
    finally:
        hooks.disconnect_items_stored(receiver)
    a, b = first["item"]["id"], revised["item"]["id"]
    assert seen == [("created", a, None), ("refreshed", a, a), ("revised", b, a)]
