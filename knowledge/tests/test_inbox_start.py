"""Where a new worker's inbox starts (issue 15, item 4; docs/api.md, "Inbox start"): from the
worker's creation by default, from the beginning on request; one resume rule."""

from __future__ import annotations

import pytest

from conftest import Persona, risk_payload
from knowledge.actions import do_prune_events
from knowledge.models import Event

# Readers see committed events only: the tests publish in committed transactions
# (docs/decisions/event-log-ordering.md, "The test-time rule").
pytestmark = pytest.mark.django_db(transaction=True)


def inbox(persona, **params) -> dict:
    r = persona.client.get(f"/api/knowledge/receive/{persona.name}", params)
    assert r.status_code == 200, r.json()
    return r.json()


def items_in(page: dict) -> list[int]:
    return [e["data"]["item"]["id"] for e in page["results"] if e["event"] == "knowledge_broadcast"]


def broadcast(persona, pattern: str, **extra) -> int:
    r = persona.broadcast("risk_pattern", risk_payload(pattern, "high"), 0.8, **extra)
    assert r.status_code == 201, r.json()
    return r.json()["item"]["id"]


@pytest.fixture
def history(think) -> list[int]:
    """What the exchange heard before the new worker existed."""
    return [broadcast(think, f"old {i}") for i in range(5)]


def test_a_new_worker_starts_from_its_creation_and_misses_nothing_sent_after(history, think):
    learning = Persona("learning")  # interested in risk_pattern
    # sent after it was created, before its first read: in its inbox
    later = [broadcast(think, "new"), broadcast(think, "for you", targets=["learning"])]
    page = inbox(learning)
    assert items_in(page) == later
    assert page["recovered"] is True
    assert page["position"] == Event.objects.get(data__item__id=history[-1]).seq
    # the state page shows the same start before and after the first read
    state = learning.client.get("/api/knowledge/state/learning").json()
    assert state["inbox"]["position"] == page["position"]


def test_a_new_worker_may_start_from_the_beginning(history, think):
    learning = Persona("learning")
    later = broadcast(think, "new")
    page = inbox(learning, start="beginning")
    assert items_in(page) == [*history, later]
    assert page["position"] == 0 and page["recovered"] is True


def test_start_applies_to_the_first_read_only(history, think):
    learning = Persona("learning")
    assert items_in(inbox(learning)) == []
    # the inbox has a position now: asking for the beginning changes nothing
    assert items_in(inbox(learning, start="beginning")) == []
    later = broadcast(think, "new")
    assert items_in(inbox(learning, start="beginning")) == [later]


def test_the_beginning_is_the_oldest_event_the_log_still_holds(history, think):
    old = Event.objects.get(data__item__id=history[1])
    do_prune_events(older_than=old.created_at)  # the first event is gone
    learning = Persona("learning")
    page = inbox(learning, start="beginning")
    assert items_in(page) == history[1:]
    assert page["recovered"] is True


def test_a_bad_start_is_400_naming_it(think):
    r = think.client.get("/api/knowledge/receive/think", {"start": "yesterday"})
    assert r.status_code == 400 and "start" in r.json()["errors"]


def test_clear_skips_an_inbox_to_the_top(history, think):
    learning = Persona("learning")
    page = inbox(learning, start="beginning")
    assert len(items_in(page)) == 5  # not acked
    r = learning.client.put("/api/knowledge/state/learning/clear")
    assert r.status_code == 200, r.json()
    assert items_in(inbox(learning)) == []
