"""Write and read scopes per worker by type (issue 10, #6)."""

from __future__ import annotations

import pytest

from conftest import issue_payload, risk_payload
from identity.models import WorkerScope
from knowledge.models import KnowledgeItem

pytestmark = pytest.mark.django_db


@pytest.fixture
def registry_mode(settings):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "scope_mode": "registry"}


def test_registry_mode_refuses_a_type_the_worker_does_not_broadcast(registry_mode, think):
    # The registry: issue_pattern is broadcast by analysis only; risk_pattern by think too.
    refused = think.broadcast("issue_pattern", issue_payload())
    assert refused.status_code == 403
    assert "issue_pattern" in refused.json()["errors"]["knowledge_type"][0]
    assert not KnowledgeItem.objects.filter(knowledge_type="issue_pattern").exists()
    assert think.broadcast("risk_pattern", risk_payload()).status_code == 201


def test_bulk_refuses_per_item_naming_the_type(registry_mode, think):
    body = {
        "items": [
            {"knowledge_type": "risk_pattern", "payload": risk_payload(), "confidence": 0.7},
            {"knowledge_type": "issue_pattern", "payload": issue_payload(), "confidence": 0.7},
        ]
    }
    r = think.client.post("/api/knowledge/broadcast/bulk", body, format="json")
    assert r.status_code == 200, r.json()
    results = r.json()["results"]
    assert [x["status"] for x in results] == [201, 403]
    assert "issue_pattern" in results[1]["errors"]["knowledge_type"][0]
    assert r.json()["stored"] == 1


def test_open_mode_is_the_default_and_an_admin_scope_narrows_it(think, staff_client):
    assert think.broadcast("issue_pattern", issue_payload()).status_code == 201
    WorkerScope.objects.create(worker=think.worker, write_types=["risk_pattern"])
    refused = think.broadcast("issue_pattern", issue_payload(location="b.py::g"))
    assert refused.status_code == 403 and "knowledge_type" in refused.json()["errors"]
    assert think.broadcast("risk_pattern", risk_payload()).status_code == 201
    # Staff broadcasting as think are held to think's scope too.
    as_think = staff_client.post(
        "/api/knowledge/broadcast",
        {
            "knowledge_type": "issue_pattern",
            "payload": issue_payload(location="c.py::h"),
            "confidence": 0.5,
            "source": "think",
        },
        format="json",
    )
    assert as_think.status_code == 403


def test_the_admin_edits_a_workers_scope(registry_mode, think, staff_client):
    page = staff_client.get(f"/admin/identity/worker/{think.worker.pk}/change/")
    assert page.status_code == 200 and b"write_types" in page.content
    form = {
        "name": "think",
        "kind": think.worker.kind,
        "description": "",
        "is_active": "on",
        "trust_pin": "",
        "state": "{}",
        "scope-TOTAL_FORMS": "1",
        "scope-INITIAL_FORMS": "0",
        "scope-MIN_NUM_FORMS": "0",
        "scope-MAX_NUM_FORMS": "1",
        "scope-0-worker": str(think.worker.pk),
        "scope-0-write_types": '["issue_pattern", "risk_pattern"]',
        "scope-0-read_types": "",
    }
    r = staff_client.post(f"/admin/identity/worker/{think.worker.pk}/change/", form)
    assert r.status_code == 302, r.content.decode()[:2000]
    assert WorkerScope.objects.get(worker=think.worker).write_types == [
        "issue_pattern",
        "risk_pattern",
    ]
    assert think.broadcast("issue_pattern", issue_payload()).status_code == 201


@pytest.mark.django_db(transaction=True)  # reads the event feed and the inbox
def test_read_scope_limits_untargeted_items_of_other_types_on_every_path(
    registry_mode, analysis, dream, think
):
    # dream neither broadcasts nor is interested in risk_pattern (the registry).
    public = analysis.broadcast("risk_pattern", risk_payload()).json()["item"]
    for_dream = analysis.broadcast(
        "risk_pattern", risk_payload("told dream"), targets=["dream"]
    ).json()["item"]
    issue = analysis.broadcast("issue_pattern", issue_payload()).json()["item"]

    def ids(persona, **params):
        r = persona.client.get("/api/knowledge/query", params)
        assert r.status_code == 200, r.json()
        return {i["id"] for i in r.json()["results"]}

    assert ids(dream, types="risk_pattern") == {for_dream["id"]}
    assert ids(dream) == {for_dream["id"], issue["id"]}
    assert dream.client.get(f"/api/knowledge/items/{public['id']}").status_code == 404
    assert ids(think, types="risk_pattern") == {public["id"]}
    stats = dream.client.get("/api/knowledge/stats").json()
    assert stats["by_type"] == {"risk_pattern": 1, "issue_pattern": 1}
    events = dream.client.get("/api/knowledge/events", {"since": 0}).json()["results"]
    assert sorted(e["data"]["item"]["id"] for e in events) == sorted([for_dream["id"], issue["id"]])
    # An admin may widen it.
    WorkerScope.objects.create(worker=dream.worker, read_types=["*"])
    assert public["id"] in ids(dream, types="risk_pattern")
