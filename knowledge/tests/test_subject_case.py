"""Subjects keep the case they were sent in and match case-insensitively (issue 15, item 4;
docs/api.md, "Subjects")."""

from __future__ import annotations

import pytest
from django.db import connection

from conflicts.models import Conflict
from conftest import issue_payload, risk_payload
from knowledge.models import KnowledgeItem

pytestmark = pytest.mark.django_db

SENT = "Cache  Stampede on DEPLOY"  # two spaces: whitespace is collapsed, case is kept
SHOWN = "Cache Stampede on DEPLOY"


def ids(response) -> list[int]:
    assert response.status_code == 200, response.json()
    return [item["id"] for item in response.json()["results"]]


@pytest.mark.django_db(transaction=True)  # reads the event feed
def test_the_subject_is_shown_as_sent_and_found_in_any_case(think, analysis):
    r = think.broadcast("risk_pattern", risk_payload(SENT, "high"), 0.8)
    assert r.status_code == 201, r.json()
    item = r.json()["item"]
    assert item["subject"] == SHOWN
    # GET and POST query, with the subject exactly as sent, as shown, and in other cases
    for subject in (SENT, SHOWN, SHOWN.lower(), SHOWN.upper(), "cache stampede on deploy"):
        assert ids(analysis.client.get("/api/knowledge/query", {"subject": subject})) == [
            item["id"]
        ], subject
        assert ids(
            analysis.client.post("/api/knowledge/query", {"subject": subject}, format="json")
        ) == [item["id"]], subject
    assert ids(analysis.client.get("/api/knowledge/query", {"subject": "cache stampede"})) == []
    # every path shows it as sent: the item, query results, the event, the inbox
    assert analysis.client.get(f"/api/knowledge/items/{item['id']}").json()["subject"] == SHOWN
    [event] = analysis.client.get("/api/knowledge/events", {"since": 0}).json()["results"]
    assert event["data"]["item"]["subject"] == SHOWN


def test_subjects_in_other_cases_are_one_subject_for_refresh_and_conflicts(think, analysis):
    first = think.broadcast("risk_pattern", risk_payload(SENT, "high"), 0.8).json()["item"]
    # the same source in another case: a refresh of its item, which takes the new spelling
    again = think.broadcast("risk_pattern", risk_payload(SENT.lower(), "high"), 0.8)
    assert again.status_code == 200 and again.json()["outcome"] == "refreshed"
    assert again.json()["item"]["id"] == first["id"]
    assert again.json()["item"]["subject"] == SHOWN.lower()
    # another source contradicting it in upper case: one conflict on one subject
    body = analysis.broadcast("risk_pattern", risk_payload(SENT.upper(), "low"), 0.8).json()
    [cid] = body["conflicts"]
    conflict = Conflict.objects.get(pk=cid)
    assert conflict.subject == "cache stampede on deploy"  # the normalised subject they share
    assert set(conflict.items.values_list("pk", flat=True)) == {first["id"], body["item"]["id"]}
    assert body["item"]["subject"] == SHOWN.upper()


def test_items_stored_before_the_column_show_their_normalised_subject(analysis):
    body = analysis.broadcast("issue_pattern", issue_payload(location="App/X.py::F")).json()
    assert body["item"]["subject"] == "long_function | App/X.py::F"
    # a row as the migration leaves an older item: no subject as sent
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {KnowledgeItem._meta.db_table} SET subject_text = '' WHERE id = %s",
            [body["item"]["id"]],
        )
    got = analysis.client.get(f"/api/knowledge/items/{body['item']['id']}").json()
    assert got["subject"] == "long_function | app/x.py::f"
    q = analysis.client.get("/api/knowledge/query", {"subject": "long_function | App/X.py::F"})
    assert ids(q) == [body["item"]["id"]]


@pytest.mark.django_db(transaction=True)
def test_items_from_before_the_migration_are_still_found_and_matched(analysis):
    from identity.tests.test_migrations import _latest, _migrate

    old = _migrate([("knowledge", "0006_conflict_updated_event_kind")])
    try:
        source = old.get_model("identity", "Worker").objects.get(name="analysis")
        old.get_model("knowledge", "KnowledgeItem").objects.create(
            knowledge_type="risk_pattern",
            source_id=source.pk,
            subject="cache stampede on deploy",  # normalised, as it was stored then
            claim="high",
            payload={"pattern": SENT, "risk_level": "high"},
            confidence=0.8,
        )
    finally:
        _migrate(_latest())
    item = KnowledgeItem.objects.get()
    assert item.subject_text == ""
    # found with the subject as it was sent, shown in its normalised form as before
    q = analysis.client.get("/api/knowledge/query", {"subject": SENT})
    assert ids(q) == [item.pk]
    assert q.json()["results"][0]["subject"] == "cache stampede on deploy"
    # and still the same subject for refresh: the source repeating it refreshes that item
    again = analysis.broadcast("risk_pattern", risk_payload(SENT, "high"), 0.8)
    assert again.status_code == 200 and again.json()["item"]["id"] == item.pk
    assert again.json()["item"]["subject"] == SHOWN
