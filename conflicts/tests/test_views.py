"""Dashboard review pages and the admin: the same action as the API."""

from __future__ import annotations

import pytest

from conflicts.models import Conflict
from conftest import risk_payload
from knowledge.choices import ItemStatus
from knowledge.models import KnowledgeItem

pytestmark = pytest.mark.django_db


@pytest.fixture
def disputed(think, analysis):
    a = think.broadcast("risk_pattern", risk_payload(level="high"), 0.8).json()["item"]["id"]
    body = analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.8).json()
    return {"conflict": body["conflicts"][0], "high": a, "low": body["item"]["id"]}


def test_pages_are_staff_only(disputed, client, think):
    for url in (
        "/dashboard/conflicts/",
        f"/dashboard/conflicts/{disputed['conflict']}/",
        "/dashboard/conflicts/history/",
    ):
        r = client.get(url)
        assert r.status_code == 302 and "/admin/login/" in r["Location"]


def test_queue_detail_resolve_and_history(disputed, staff_client):
    queue = staff_client.get("/dashboard/conflicts/").content.decode()
    assert (
        f'data-conflict="{disputed["conflict"]}"' in queue
        and "db migration without backfill" in queue
    )
    # the queue reuses the FilterSet: resolved conflicts are not in the default view
    assert (
        "No conflicts match"
        in staff_client.get("/dashboard/conflicts/?status=resolved").content.decode()
    )
    assert (
        f'data-conflict="{disputed["conflict"]}"'
        in staff_client.get("/dashboard/conflicts/?worker=think").content.decode()
    )

    page = staff_client.get(f"/dashboard/conflicts/{disputed['conflict']}/").content.decode()
    assert 'id="resolve-form"' in page and f'data-item="{disputed["high"]}"' in page

    r = staff_client.post(
        f"/dashboard/conflicts/{disputed['conflict']}/",
        {
            "decision": "pick",
            "winner_item": disputed["high"],
            "note": "read the diff",
            "version": Conflict.objects.get().version,
        },
    )
    assert r.status_code == 302
    assert KnowledgeItem.objects.get(pk=disputed["low"]).status == ItemStatus.SUPERSEDED
    page = staff_client.get(f"/dashboard/conflicts/{disputed['conflict']}/").content.decode()
    assert "recorded" in page and 'id="resolve-form"' not in page and "read the diff" in page
    # a second post (stale form) is refused with a message, nothing applied twice
    staff_client.post(f"/dashboard/conflicts/{disputed['conflict']}/", {"decision": "dismiss"})
    page = staff_client.get(f"/dashboard/conflicts/{disputed['conflict']}/").content.decode()
    assert "already resolved" in page
    history = staff_client.get("/dashboard/conflicts/history/").content.decode()
    assert "read the diff" in history and history.count("<tr>") == 2  # header + one decision


def test_admin_lists_shows_evidence_and_resolves_by_action(disputed, staff_client):
    changelist = staff_client.get(
        "/admin/conflicts/conflict/?status__exact=pending_review&q=migration"
    )
    assert (
        changelist.status_code == 200
        and "db migration without backfill" in changelist.content.decode()
    )
    change = staff_client.get(
        f"/admin/conflicts/conflict/{disputed['conflict']}/change/"
    ).content.decode()
    assert "source trust" in change and "<b>high</b>" in change and "<b>low</b>" in change
    r = staff_client.post(
        "/admin/conflicts/conflict/",
        {"action": "accept_proposal", "_selected_action": [disputed["conflict"]]},
    )
    assert r.status_code == 302
    conflict = Conflict.objects.get()
    assert conflict.status == "resolved" and conflict.decided_by == "user:alice"
    assert staff_client.get("/admin/conflicts/resolution/").status_code == 200
    assert staff_client.get("/admin/conflicts/sourcetrust/").status_code == 200
