"""Dashboard review pages and the admin: the same action as the API."""

from __future__ import annotations

import re

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
    assert "“high” picked as the right claim" in page and "read the diff" in page
    assert 'id="resolve-form"' not in page and 'id="decided-by">alice<' in page
    # a second post (stale form) is refused with a message, nothing applied twice
    staff_client.post(
        f"/dashboard/conflicts/{disputed['conflict']}/", {"decision": "dismiss", "confirmed": "yes"}
    )
    page = staff_client.get(f"/dashboard/conflicts/{disputed['conflict']}/").content.decode()
    assert "already resolved" in page
    history = staff_client.get("/dashboard/conflicts/history/").content.decode()
    assert "read the diff" in history and history.count("<tr>") == 2  # header + one decision
    assert "<td>alice</td>" in history and "user:alice" not in history


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
    assert 'name="_save"' not in change  # read-only: decisions go through the actions
    Conflict.objects.update(proposal={"winner_claim": "high", "margin": 0.0000000511853919804572})
    change = staff_client.get(f"/admin/conflicts/conflict/{disputed['conflict']}/change/")
    assert "5.118" not in change.content.decode()  # neither 0.0000000511… nor 5.118…e-08
    assert "&quot;margin&quot;: 0.0" in change.content.decode()
    selected = {"action": "accept_proposal", "_selected_action": [disputed["conflict"]]}
    r = staff_client.post("/admin/conflicts/conflict/", selected)
    assert r.status_code == 200 and 'id="decide-selected"' in r.content.decode()  # asks a note
    r = staff_client.post("/admin/conflicts/conflict/", {**selected, "post": "yes", "note": ""})
    assert "Write a note" in r.content.decode() and Conflict.objects.get().status != "resolved"
    r = staff_client.post(
        "/admin/conflicts/conflict/", {**selected, "post": "yes", "note": "checked the logs"}
    )
    assert r.status_code == 302
    conflict = Conflict.objects.get()
    assert conflict.note == "checked the logs" or "checked the logs" in str(
        conflict.resolutions.get().note
    )
    assert conflict.status == "resolved" and conflict.decided_by == "user:alice"
    assert staff_client.get("/admin/conflicts/resolution/").status_code == 200
    assert staff_client.get("/admin/conflicts/sourcetrust/").status_code == 200


def test_reject_and_dismiss_ask_for_a_confirmation_first(disputed, staff_client):
    url = f"/dashboard/conflicts/{disputed['conflict']}/"
    version = Conflict.objects.get().version
    r = staff_client.post(url, {"decision": "reject", "version": version, "note": "both wrong"})
    page = r.content.decode()
    assert r.status_code == 200 and 'id="confirm-form"' in page
    assert "Yes, reject every claim" in page and 'value="both wrong"' in page
    assert Conflict.objects.get().status == "pending_review"  # nothing decided yet
    staff_client.post(
        url, {"decision": "reject", "version": version, "note": "both wrong", "confirmed": "yes"}
    )
    conflict = Conflict.objects.get()
    assert conflict.decision == "reject" and conflict.resolutions.get().note == "both wrong"


def test_messages_are_sentences_and_numbers_are_rounded(disputed, staff_client):
    url = f"/dashboard/conflicts/{disputed['conflict']}/"
    Conflict.objects.update(margin=0.0000000511853919804572, proposed_claim="high")
    page = staff_client.get(url).content.decode()
    assert "0.0000000511" not in page and "no proposal</b>: the evidence is tied" in page
    assert 'value="accept"' not in page  # a tie is not offered as a proposal
    assert f'href="/admin/knowledge/knowledgeitem/{disputed["high"]}/change/"' in page
    assert f"?item_id={disputed['high']}" in page  # the item's events
    staff_client.post(url, {"decision": "pick"})
    page = staff_client.get(url).content.decode()
    assert "To pick a winner, choose which item is right first." in page
    assert "winner_item" not in page.split('class="messages"')[1].split("</ul>")[0]


def test_next_in_queue_after_a_decision(think, analysis, staff_client):
    ids = []
    for pattern in ("migration a", "migration b"):
        think.broadcast("risk_pattern", risk_payload(pattern, "high"), 0.8)
        body = analysis.broadcast("risk_pattern", risk_payload(pattern, "low"), 0.8).json()
        ids.append(body["conflicts"][0])
    first, second = ids
    staff_client.post(
        f"/dashboard/conflicts/{second}/",
        {"decision": "dismiss", "confirmed": "yes", "note": "noise"},
    )
    page = staff_client.get(f"/dashboard/conflicts/{second}/").content.decode()
    assert f'href="/dashboard/conflicts/{first}/" id="next-in-queue"' in page


def test_a_bad_filter_value_is_an_error_not_ignored(disputed, staff_client):
    r = staff_client.get("/dashboard/conflicts/?opened_after=yesterday")
    page = r.content.decode()
    assert r.status_code == 400 and 'id="filter-error"' in page
    assert "<b>Opened after</b>: Enter a date and time" in page
    assert f'data-conflict="{disputed["conflict"]}"' not in page
    ok = staff_client.get("/dashboard/conflicts/?opened_after=2020-01-01T00:00")
    assert (
        ok.status_code == 200 and f'data-conflict="{disputed["conflict"]}"' in ok.content.decode()
    )
    form = ok.content.decode()
    assert 'type="datetime-local"' in form and "[invalid name]" not in form
    assert "is greater than or equal to" not in form and "Worker involved" in form
    api = staff_client.get("/api/knowledge/conflicts?opened_after=yesterday")
    assert api.status_code == 400 and "opened_after" in api.json()["errors"]


def test_every_page_has_conflicts_in_the_navigation_and_times_with_the_zone(disputed, staff_client):
    for url in ("/dashboard/", "/dashboard/alerts/", "/dashboard/live/", "/dashboard/conflicts/"):
        page = staff_client.get(url).content.decode()
        assert '<a href="/dashboard/conflicts/" id="nav-conflicts"' in page, url
    page = staff_client.get(f"/dashboard/conflicts/{disputed['conflict']}/").content.decode()
    assert " UTC</time>" in page and 'rel="icon"' in page


def test_admin_item_list_puts_what_a_reviewer_compares_first_newest_first(disputed, staff_client):
    page = staff_client.get("/admin/knowledge/knowledgeitem/").content.decode()
    header = page.split("<thead>")[1].split("</thead>")[0]
    order = [
        header.index(c)
        for c in (
            "column-claim",
            "column-confidence_display",
            "column-freshness_display",
            "column-subject_display",
        )
    ]
    assert order == sorted(order)
    rows = page.split("<tbody>")[1]
    assert rows.index(f">{disputed['low']}<") < rows.index(f">{disputed['high']}<")  # newest first
    change = staff_client.get(
        f"/admin/knowledge/knowledgeitem/{disputed['high']}/change/"
    ).content.decode()
    assert 'name="_save"' not in change
    assert f'href="/dashboard/conflicts/{disputed["conflict"]}/">conflict #' in change
    events = staff_client.get("/admin/knowledge/event/").content.decode()
    seqs = [int(x) for x in re.findall(r'class="field-seq"><a href="[^"]*">(\d+)<', events)]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) > 1
    assert (
        f'href="/dashboard/conflicts/{disputed["conflict"]}/">#{disputed["conflict"]}</a>' in events
    )
