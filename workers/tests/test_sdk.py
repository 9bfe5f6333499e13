"""BaseWorker on the in-process transport: routing, queries, broadcasts, inbox, the loop."""

from __future__ import annotations

import threading
import time

import pytest

from identity.models import Worker
from knowledge.models import Event, InboxCursor, KnowledgeItem
from kx_sdk import ROUTES, BaseWorker, NotAvailableError, SDKError
from kx_sdk import worker as sdk_worker
from workers.inprocess import InProcessTransport

pytestmark = pytest.mark.django_db

PAYLOADS = {
    "risk_pattern": {"pattern": "p", "risk_level": "high"},
    "decision_outcome": {"proposal": "x", "decision": "approve", "predicted_success": 0.5},
    "successful_fix": {"rule": "r", "target": "t", "fix": "f"},
    "issue_pattern": {"rule": "r", "location": "a.py::f", "severity": "low"},
    "pattern_evolution": {"pattern": "p", "trend": "stable"},
    "learned_pattern": {"pattern": "p", "effect": "mixed", "success_rate": 0.5, "samples": 3},
    "proposal_quality": {"proposal_kind": "k", "rule": "r", "quality": "high"},
    "context_enrichment": {"target": "t", "aspect": "churn", "value": "low"},
    "knowledge_retrieval": {"query": "q", "hit_rate": 0.5},
    "complexity_trend": {"scope": "s", "direction": "stable"},
}


class Recorder(BaseWorker):
    interval = 0.0

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.calls: list[tuple[str, str]] = []
        self.fail_next = False
        self.steps = 0

    def step(self, **_):
        self.steps += 1
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("boom")

    def update_risk_model(self, items):
        self.calls += [("risk", i["knowledge_type"]) for i in items]

    def update_pattern_models(self, items):
        self.calls += [("pattern", i["knowledge_type"]) for i in items]

    def update_issue_detection(self, items):
        self.calls += [("issue", i["knowledge_type"]) for i in items]

    def update_proposal_generation(self, items):
        self.calls += [("proposal", i["knowledge_type"]) for i in items]

    def update_context_retrieval(self, items):
        self.calls += [("context", i["knowledge_type"]) for i in items]


def make(persona, cls=Recorder, **kw):
    return cls(InProcessTransport(persona.worker), **kw)


def test_received_items_are_routed_as_the_plan_says_and_counted(think):
    worker = make(think)
    items = [
        {"id": n, "knowledge_type": kind, "source": "x", "subject": str(n), "payload": payload}
        for n, (kind, payload) in enumerate(PAYLOADS.items())
    ]
    worker.process_received_knowledge(items)
    assert sorted(worker.calls) == sorted(
        [
            ("risk", "risk_pattern"),
            ("pattern", "learned_pattern"),
            ("pattern", "pattern_evolution"),
            ("issue", "issue_pattern"),
            ("proposal", "proposal_quality"),
            ("proposal", "successful_fix"),
            ("context", "context_enrichment"),
            ("context", "knowledge_retrieval"),
        ]
    )
    assert set(ROUTES) == set(PAYLOADS) - {"decision_outcome", "complexity_trend"}
    assert worker.stats.received == 10  # unrouted types are still counted
    assert worker.stats.received_by_type["decision_outcome"] == 1
    assert len(worker.known()) == 10


def test_a_retried_broadcast_with_its_key_is_stored_once(analysis):
    worker = make(analysis)
    body = PAYLOADS["issue_pattern"]
    first = worker.broadcast("issue_pattern", body, 0.9, idempotency_key="k-1")
    again = worker.broadcast("issue_pattern", body, 0.9, idempotency_key="k-1")
    assert again["item"]["id"] == first["item"]["id"] and again["replayed"] is True
    assert KnowledgeItem.objects.filter(source__name="analysis").count() == 1
    assert Event.objects.filter(kind="knowledge_broadcast").count() == 1
    with pytest.raises(SDKError) as exc:
        worker.broadcast("issue_pattern", {**body, "severity": "high"}, 0.9, idempotency_key="k-1")
    assert exc.value.status == 422 and exc.value.field == "idempotency_key"


def test_invalid_broadcast_names_the_field(analysis):
    with pytest.raises(SDKError) as exc:
        make(analysis).broadcast("issue_pattern", {"rule": "r"}, 0.9)
    assert exc.value.status == 400 and "location" in (exc.value.field or "")


def test_bulk_broadcast_sends_only_what_changed(analysis):
    worker = make(analysis)
    drafts = [
        {
            "knowledge_type": "issue_pattern",
            "payload": {**PAYLOADS["issue_pattern"], "location": f"a.py::f{i}"},
            "confidence": 0.9,
        }
        for i in range(3)
    ]
    assert len(worker.broadcast_many(drafts)) == 3
    assert worker.broadcast_many(drafts) == []
    assert worker.stats.unchanged_skipped == 3
    drafts[1] = {**drafts[1], "payload": {**drafts[1]["payload"], "severity": "high"}}
    sent = worker.broadcast_many(drafts)
    assert [r["outcome"] for r in sent] == ["revised"]
    assert KnowledgeItem.objects.filter(status="active").count() == 3
    assert Event.objects.filter(kind="knowledge_broadcast").count() == 4


def test_queries_follow_pages_and_filters(analysis, think, monkeypatch):
    monkeypatch.setattr(sdk_worker, "PAGE_SIZE", 2)
    sender = make(analysis)
    for i in range(5):
        urgency = "high" if i < 2 else "low"
        sender.broadcast(
            "issue_pattern", {**PAYLOADS["issue_pattern"], "location": f"m.py::f{i}"}, 0.9, urgency
        )
    make(think).broadcast("risk_pattern", PAYLOADS["risk_pattern"], 0.7)
    reader = make(think)
    assert len(reader.query_knowledge(["issue_pattern"])) == 5
    assert len(reader.query_knowledge(["issue_pattern"], limit=3)) == 3
    assert {i["source"] for i in reader.get_knowledge_by_source("analysis")} == {"analysis"}
    assert len(reader.get_knowledge_by_urgency("high", types=["issue_pattern"])) == 2
    reader.interests = ("risk_pattern",)
    assert [i["knowledge_type"] for i in reader.get_relevant_knowledge()] == ["risk_pattern"]
    isolated = make(think, exchange=False)
    assert {i["source"] for i in isolated.query_knowledge(["issue_pattern", "risk_pattern"])} == {
        "think"
    }
    with pytest.raises(SDKError) as exc:
        reader.query_knowledge(["no_such_type"])
    assert exc.value.field == "types"


@pytest.mark.django_db(transaction=True)  # the query cache is invalidated on commit
def test_refresh_merges_only_new_items_after_the_first_load(analysis, think):
    sender = make(analysis)
    sender.broadcast("issue_pattern", PAYLOADS["issue_pattern"], 0.9)
    reader = make(think)
    assert reader.refresh_knowledge(["issue_pattern"], lookback=0) == 1
    assert reader.refresh_knowledge(["issue_pattern"], lookback=0) == 0
    sender.broadcast("issue_pattern", {**PAYLOADS["issue_pattern"], "location": "b.py::g"}, 0.9)
    assert reader.refresh_knowledge(["issue_pattern"], lookback=0) == 1
    assert len(reader.known(["issue_pattern"])) == 2


@pytest.mark.django_db(transaction=True)  # reads the inbox: committed events only
def test_receive_processes_the_inbox_then_acks_it(analysis, think):
    make(analysis).broadcast("issue_pattern", PAYLOADS["issue_pattern"], 0.9)
    reader = make(think)
    got = reader.receive()
    assert [i["knowledge_type"] for i in got] == ["issue_pattern"]
    assert reader.calls == [("issue", "issue_pattern")]
    assert reader.receive() == []  # acked: not delivered twice
    assert InboxCursor.objects.get(worker=think.worker).position == Event.objects.latest("seq").seq
    assert reader.stats.reception_seconds > 0


@pytest.mark.django_db(transaction=True)  # reads the inbox: committed events only
def test_without_exchange_the_inbox_is_left_alone(analysis, think):
    make(analysis).broadcast("issue_pattern", PAYLOADS["issue_pattern"], 0.9)
    isolated = make(think, exchange=False)
    assert isolated.receive() == [] and isolated.stats.received == 0
    assert make(think).receive() != []  # still there for when exchange is on


def test_a_failing_cycle_is_counted_and_the_loop_goes_on(think):
    worker = make(think)
    worker.fail_next = True
    stats = worker.run(max_cycles=3)
    assert (stats.cycles, stats.errors, worker.steps) == (3, 1, 3)
    assert "boom" in stats.last_error
    state = Worker.objects.get(name="think").state
    assert state["status"] == "stopped" and state["stats"]["cycles"] == 3
    assert state["stats"]["errors"] == 1


@pytest.mark.django_db(transaction=True)  # the loop runs in another thread
def test_stop_ends_a_waiting_loop_promptly(think):
    from django.db import connection

    worker = make(think, interval=30.0)

    def run():
        try:
            worker.run()
        finally:
            connection.close()  # this thread's connection

    thread = threading.Thread(target=run)
    thread.start()
    while worker.stats.cycles < 1:
        time.sleep(0.01)
    worker.stop()
    thread.join(timeout=20)  # the loop would otherwise sleep its 30 s interval
    assert not thread.is_alive()
    assert worker.stats.cycles == 1


def test_interval_has_jitter_within_bounds(think):
    worker = make(think, interval=10.0, jitter=0.2, seed=1)
    delays = {round(worker.next_delay(), 3) for _ in range(50)}
    assert len(delays) > 10 and all(8.0 <= d <= 12.0 for d in delays)


def test_flag_conflict_calls_the_conflicts_app(analysis, think):
    a = make(analysis).broadcast("risk_pattern", PAYLOADS["risk_pattern"], 0.9)
    b = make(think).broadcast(
        "risk_pattern", {**PAYLOADS["risk_pattern"], "risk_level": "low"}, 0.9
    )
    worker = make(think)
    with pytest.raises(SDKError):
        worker.flag_conflict([a["item"]["id"]], "one item is not a conflict")
    from conflicts import actions

    if not hasattr(actions, "do_flag_conflict"):
        with pytest.raises(NotAvailableError, match="do_flag_conflict"):
            worker.flag_conflict([a["item"]["id"], b["item"]["id"]], "risk levels disagree")
    else:
        answer = worker.flag_conflict([a["item"]["id"], b["item"]["id"]], "risk levels disagree")
        assert answer


@pytest.mark.django_db(transaction=True)  # reads the inbox: committed events only
def test_a_look_before_receiving_skips_empty_inboxes_and_lets_a_read_pass_a_long_lag(
    analysis, think, recall
):
    reader = InProcessTransport(recall.worker)  # recall is not interested in issue patterns
    assert reader.inbox_may_have_news() is True  # never read: let read_inbox decide
    listener = make(recall)
    listener.receive()
    listener.flush_ack()
    sender = make(analysis)
    for i in range(3):
        sender.broadcast(
            "issue_pattern", {**PAYLOADS["issue_pattern"], "location": f"x.py::f{i}"}, 0.9
        )
    before = InboxCursor.objects.get(worker=recall.worker).position
    top = Event.objects.latest("seq").seq
    lag = top - before  # sequences are not reset between tests
    assert reader.inbox_may_have_news(skip_after=lag) is False  # nothing for recall
    # a long lag: worth a read, which moves past what was all for others ...
    assert reader.inbox_may_have_news(skip_after=lag - 1) is True
    page = reader.receive()
    assert page["results"] == [] and page["ack"] == top
    # ... so a look after that page (processed, to be acked by the next read) finds nothing
    assert reader.inbox_may_have_news(after=page["ack"], skip_after=0) is False
    reader.receive(ack=page["ack"], epoch=page["epoch"])
    assert InboxCursor.objects.get(worker=recall.worker).position == top
    assert reader.inbox_may_have_news(skip_after=0) is False
    sender.broadcast("context_enrichment", PAYLOADS["context_enrichment"], 0.9)  # recall's type
    assert reader.inbox_may_have_news() is True
    assert [i["knowledge_type"] for i in make(recall).receive()] == ["context_enrichment"]
