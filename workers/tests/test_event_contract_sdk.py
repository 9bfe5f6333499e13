"""The event contract as an SDK client sees it (docs/api.md: "Event order", "Conflict events",
"Conflict version", "Subjects", "Inbox start"), over HTTP against a live daphne."""

from __future__ import annotations

import pytest

from conflicts.actions import do_resolve
from conflicts.models import Conflict
from conftest import risk_payload
from identity.actions import do_create_worker
from kx_sdk import BaseWorker, HttpTransport
from workers.tests.test_http import live_server_process  # noqa: F401 (fixture)

SENT = "Cache Stampede on Deploy"


class Recorder(BaseWorker):
    """A worker outside the server: keeps the conflict events it is handed, in order."""

    interests = ("risk_pattern",)

    def __init__(self, transport):
        super().__init__(transport)
        self.seen: list[tuple[str, object]] = []

    def process_received_knowledge(self, knowledge):
        self.seen.extend(("item", item["id"]) for item in knowledge)
        super().process_received_knowledge(knowledge)

    def on_conflict_event(self, event):
        self.seen.append((event["event"], event["data"]))
        super().on_conflict_event(event)


def sdk_worker(url: str, name: str, **transport) -> Recorder:
    _, token = do_create_worker(name)
    return Recorder(HttpTransport(url, token, retries=1, **transport))


def broadcast(worker: BaseWorker, level: str, subject: str = SENT, confidence: float = 0.8):
    return worker.transport.broadcast(
        {
            "knowledge_type": "risk_pattern",
            "payload": risk_payload(subject, level),
            "confidence": confidence,
        }
    )


@pytest.mark.django_db(transaction=True)
def test_an_sdk_client_sees_the_contract(live_server_process, django_user_model):  # noqa: F811
    url = live_server_process
    think = sdk_worker(url, "think")
    history = broadcast(think, "high", subject="before anyone listened")["item"]["id"]
    watcher = sdk_worker(url, "watcher")  # created now: its inbox starts here
    archivist = sdk_worker(url, "archivist", inbox_start="beginning")
    analysis = sdk_worker(url, "analysis")

    mine = broadcast(think, "high")["item"]
    assert mine["subject"] == SENT  # kept as sent
    theirs = broadcast(analysis, "low", subject=SENT.upper())["item"]
    [cid] = Conflict.objects.values_list("pk", flat=True)

    # Subjects: the exact subject as sent finds both items, so does another case.
    for subject in (SENT, SENT.lower()):
        found = think.transport.query({"subject": subject})["results"]
        assert sorted(i["id"] for i in found) == [mine["id"], theirs["id"]]

    # Order: the contradicting broadcast, then the conflict it opened, with its state.
    assert watcher.run_cycle() and think.run_cycle()
    assert watcher.seen == [("item", mine["id"]), ("item", theirs["id"])]  # takes no part
    assert [k for k, _ in think.seen] == ["item", "conflict_detected"], think.seen
    assert think.seen[0][1] == theirs["id"]
    opened = think.seen[1][1]
    conflict = Conflict.objects.get(pk=cid)
    assert opened["transition"] == "opened"
    assert opened["conflict"]["status"] == conflict.status == "pending_review"
    assert opened["conflict"]["version"] == conflict.version
    assert opened["conflict"]["proposed_claim"] == conflict.proposed_claim

    # A refresh loop changes nothing a reviewer sees: no event, same version.
    for step in range(5):
        assert broadcast(analysis, "low", SENT.upper(), 0.8 + step / 100)["outcome"] == "refreshed"
    assert think.run_cycle()
    # the refreshes arrive as items; none is a conflict event
    assert [k for k, _ in think.seen] == ["item", "conflict_detected"] + ["item"] * 5
    assert Conflict.objects.get(pk=cid).version == conflict.version

    # A person decides with the version the worker was told; the worker hears the decision.
    alice = django_user_model.objects.create_user("alice", is_staff=True)
    do_resolve(cid, "accept", user=alice, version=opened["conflict"]["version"])
    assert think.run_cycle()
    kind, resolved = think.seen[-1]
    assert kind == "knowledge_resolved" and resolved["transition"] == "resolved"
    assert resolved["conflict"]["status"] == "resolved"
    assert resolved["conflict"]["version"] > opened["conflict"]["version"]

    # Inbox start: the archivist asked for the beginning and gets the history too.
    assert archivist.run_cycle()
    received = [v for k, v in archivist.seen if k == "item"]
    assert received[:3] == [history, mine["id"], theirs["id"]]
    assert history not in [v for k, v in watcher.seen if k == "item"]
