"""Inbox (receive/ack), subscriptions, validation, worker state, stats, health."""

from __future__ import annotations

import pytest

from conftest import issue_payload, risk_payload
from knowledge.models import Event, InboxCursor

# Readers see committed events only: the tests publish in committed transactions
# (docs/decisions/event-log-ordering.md, "The test-time rule").
pytestmark = pytest.mark.django_db(transaction=True)


def inbox(persona, **params):
    r = persona.client.get(f"/api/knowledge/receive/{persona.name}", params)
    assert r.status_code == 200, r.content
    return r.json()


def items_of(page):
    return [
        (m["event"], m["data"]["item"]["knowledge_type"])
        for m in page["results"]
        if "item" in m["data"]
    ]


def test_inbox_holds_interesting_types_from_others(analysis, think, learning):
    analysis.broadcast("issue_pattern", issue_payload())  # think is interested
    analysis.broadcast(
        "complexity_trend", {"scope": "app", "direction": "increasing"}
    )  # only dream
    think.broadcast("risk_pattern", risk_payload())  # think's own item
    page = inbox(think)
    assert items_of(page) == [("knowledge_broadcast", "issue_pattern")]
    # learning is interested in risk_pattern (from think)
    assert items_of(inbox(learning)) == [("knowledge_broadcast", "risk_pattern")]


def test_unacked_items_come_again_and_ack_consumes(analysis, think):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    first = inbox(think)
    assert len(first["results"]) == 1
    again = inbox(think)
    assert [m["seq"] for m in again["results"]] == [m["seq"] for m in first["results"]]
    r = think.client.post("/api/knowledge/receive/think/ack", {"seq": first["ack"]}, format="json")
    assert r.status_code == 200 and r.json()["position"] == first["ack"]
    assert inbox(think)["results"] == []
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::g"))
    later = inbox(think)
    assert len(later["results"]) == 1
    assert later["results"][0]["data"]["item"]["payload"]["location"] == "b.py::g"


def test_inbox_pages_with_limit_and_ack_position(analysis, think):
    for i in range(7):
        analysis.broadcast("issue_pattern", issue_payload(location=f"m{i}.py::f"))
    seen = []
    while True:
        page = inbox(think, limit=3)
        if not page["results"]:
            break
        seen.extend(m["data"]["item"]["payload"]["location"] for m in page["results"])
        think.client.post("/api/knowledge/receive/think/ack", {"seq": page["ack"]}, format="json")
    assert seen == [f"m{i}.py::f" for i in range(7)]
    assert think.worker.__class__.objects.get(pk=think.worker.pk).received_count == 7


def test_filtered_out_events_still_advance_the_ack_position(analysis, think):
    for i in range(5):
        analysis.broadcast("complexity_trend", {"scope": f"s{i}", "direction": "stable"})
    page = inbox(think)
    assert page["results"] == []
    assert page["ack"] == Event.objects.order_by("-seq").first().seq


def test_targeted_item_reaches_only_its_target(analysis, think, dream):
    analysis.broadcast(
        "complexity_trend", {"scope": "pkg", "direction": "increasing"}, targets=["think"]
    )
    assert items_of(inbox(think)) == [("knowledge_broadcast", "complexity_trend")]
    # dream is interested in complexity_trend, but the item is addressed to think only
    assert items_of(inbox(dream)) == []


def test_subscribe_widens_and_unsubscribe_narrows(analysis, think):
    r = think.client.post(
        "/api/knowledge/subscribe", {"types": ["complexity_trend"]}, format="json"
    )
    assert r.status_code == 200
    assert "complexity_trend" in r.json()["effective_types"]
    r = think.client.post("/api/knowledge/unsubscribe", {"types": ["issue_pattern"]}, format="json")
    assert "issue_pattern" not in r.json()["effective_types"]
    analysis.broadcast("complexity_trend", {"scope": "pkg", "direction": "increasing"})
    analysis.broadcast("issue_pattern", issue_payload())
    assert items_of(inbox(think)) == [("knowledge_broadcast", "complexity_trend")]
    r = think.client.post("/api/knowledge/unsubscribe", {}, format="json")  # reset to defaults
    assert r.json()["types"] == [] and r.json()["muted_types"] == []


def test_subscribe_sources_and_min_urgency(analysis, learning, think):
    think.client.post(
        "/api/knowledge/subscribe", {"sources": ["learning"], "min_urgency": "high"}, format="json"
    )
    analysis.broadcast("issue_pattern", issue_payload(), urgency="critical")  # wrong source
    learning.broadcast(
        "learned_pattern",
        {"pattern": "p", "effect": "mixed", "success_rate": 0.5, "samples": 3},
        urgency="normal",
    )  # too low
    learning.broadcast(
        "learned_pattern",
        {"pattern": "q", "effect": "mixed", "success_rate": 0.5, "samples": 3},
        urgency="high",
    )
    got = inbox(think)["results"]
    assert [m["data"]["item"]["subject"] for m in got] == ["q"]


def test_subscribe_rejects_unknown_names(think):
    r = think.client.post("/api/knowledge/subscribe", {"types": ["nope"]}, format="json")
    assert r.status_code == 400 and "types" in r.json()["errors"]
    r = think.client.post("/api/knowledge/subscribe", {"sources": ["ghost"]}, format="json")
    assert r.status_code == 400 and "sources" in r.json()["errors"]
    r = think.client.post("/api/knowledge/subscribe", {"events": ["explosion"]}, format="json")
    assert r.status_code == 400


def test_worker_cannot_read_or_ack_another_inbox(think, dream):
    assert think.client.get("/api/knowledge/receive/dream").status_code == 403
    assert (
        think.client.post("/api/knowledge/receive/dream/ack", {"seq": 0}, format="json").status_code
        == 403
    )
    assert (
        think.client.post(
            "/api/knowledge/subscribe",
            {"worker": "dream", "types": ["risk_pattern"]},
            format="json",
        ).status_code
        == 403
    )


def test_ack_beyond_top_or_negative_is_400(think):
    assert (
        think.client.post(
            "/api/knowledge/receive/think/ack", {"seq": 10**9}, format="json"
        ).status_code
        == 400
    )
    assert (
        think.client.post(
            "/api/knowledge/receive/think/ack", {"seq": -1}, format="json"
        ).status_code
        == 400
    )
    assert (
        think.client.post(
            "/api/knowledge/receive/think/ack", {"seq": "x"}, format="json"
        ).status_code
        == 400
    )


def test_ack_never_moves_backwards(analysis, think):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::f"))
    first, second = Event.objects.order_by("seq").values_list("seq", flat=True)
    think.client.post("/api/knowledge/receive/think/ack", {"seq": second}, format="json")
    r = think.client.post("/api/knowledge/receive/think/ack", {"seq": first}, format="json")
    assert r.json()["position"] == second


def test_inbox_after_log_reset_says_not_recovered(analysis, think):
    from knowledge.actions import do_reset_event_log

    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    page = inbox(think)
    think.client.post("/api/knowledge/receive/think/ack", {"seq": page["ack"]}, format="json")
    do_reset_event_log()
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::f"))
    page = inbox(think)
    # The resume rule (knowledge/resume.py): not recovered, the cursor stands at the top.
    assert page["recovered"] is False and page["results"] == []
    assert page["position"] == page["top"] == Event.objects.order_by("-seq").first().seq
    analysis.broadcast("issue_pattern", issue_payload(location="c.py::f"))
    page = inbox(think)
    assert page["recovered"] is True
    assert [m["data"]["item"]["payload"]["location"] for m in page["results"]] == ["c.py::f"]


def test_validate_records_verdicts_and_status(analysis, think, learning):
    item = analysis.broadcast("issue_pattern", issue_payload()).json()["item"]["id"]
    r = think.client.post(
        "/api/knowledge/validate", {"item": item, "verdict": "confirmed"}, format="json"
    )
    assert r.status_code == 200 and r.json()["validation_status"] == "confirmed"
    r = learning.client.post(
        "/api/knowledge/validate", {"item": item, "verdict": "disputed"}, format="json"
    )
    assert r.json()["validation_status"] == "unvalidated"  # one each: undecided
    r = think.client.post(
        "/api/knowledge/validate",
        {"item": item, "verdict": "disputed", "note": "fixed"},
        format="json",
    )
    assert (
        r.json()["validation_status"] == "disputed"
    )  # think changed its mind: replaces its verdict
    # the source hears about it in its inbox
    kinds = [m["event"] for m in inbox(analysis)["results"]]
    assert kinds.count("knowledge_validated") == 3


def test_validate_bad_input(analysis, think):
    item = analysis.broadcast("issue_pattern", issue_payload()).json()["item"]["id"]
    assert (
        analysis.client.post(
            "/api/knowledge/validate", {"item": item, "verdict": "confirmed"}, format="json"
        ).status_code
        == 400
    )  # own item
    assert (
        think.client.post(
            "/api/knowledge/validate", {"item": 999, "verdict": "confirmed"}, format="json"
        ).status_code
        == 404
    )
    assert (
        think.client.post(
            "/api/knowledge/validate", {"item": item, "verdict": "maybe"}, format="json"
        ).status_code
        == 400
    )


def test_state_update_and_clear(analysis, think):
    analysis.broadcast("issue_pattern", issue_payload())
    r = think.client.put(
        "/api/knowledge/state/think", {"state": {"cycle": 3, "model": "v2"}}, format="json"
    )
    assert r.status_code == 200 and r.json()["state"] == {"cycle": 3, "model": "v2"}
    state = think.client.get("/api/knowledge/state/think").json()
    assert state["inbox"]["behind"] == 1 and state["inbox"]["position"] == 0
    assert "issue_pattern" in state["subscription"]["effective_types"]
    r = think.client.put("/api/knowledge/state/think/clear")
    assert r.status_code == 200
    cleared = r.json()
    assert cleared["state"] == {} and cleared["inbox"]["behind"] == 0
    assert inbox(think)["results"] == []
    assert InboxCursor.objects.get(worker=think.worker).position == cleared["inbox"]["position"]
    assert think.client.put("/api/knowledge/state/analysis/clear").status_code == 403


def test_stats(analysis, think):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::f"))
    item = think.broadcast("risk_pattern", risk_payload()).json()["item"]["id"]
    analysis.client.post(
        "/api/knowledge/validate", {"item": item, "verdict": "confirmed"}, format="json"
    )
    s = think.client.get("/api/knowledge/stats").json()
    assert s["items"]["total"] == 3 and s["items"]["last_24h"] == 3
    assert s["by_type"] == {"issue_pattern": 2, "risk_pattern": 1}
    assert s["by_source"] == {"analysis": 2, "think": 1}
    assert s["validation_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert s["events"]["top"] == Event.objects.order_by("-seq").first().seq


def test_health_needs_no_auth_and_shows_no_secrets(anon_client, db, settings):
    r = anon_client.get("/api/knowledge/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache", "channel_layer"}
    text = r.content.decode()
    assert settings.SECRET_KEY not in text
    assert "postgres://" not in text and "redis://" not in text and "127.0.0.1" not in text


def test_health_reports_a_broken_cache_as_degraded(anon_client, db, monkeypatch):
    from knowledge import health

    def broken():
        raise ConnectionError("cache down")

    monkeypatch.setitem(health.CHECKS, "cache", broken)
    r = anon_client.get("/api/knowledge/health")
    assert r.status_code == 200
    assert r.json()["status"] == "degraded"
    assert r.json()["checks"]["cache"] == {
        "ok": False,
        "latency_ms": r.json()["checks"]["cache"]["latency_ms"],
        "error": "ConnectionError",
    }


def test_a_read_can_ack_the_previous_page(analysis, think):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    first = inbox(think)
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::f"))
    second = inbox(think, ack=first["ack"], epoch=first["epoch"])
    assert second["position"] == first["ack"]
    assert [m["data"]["item"]["payload"]["location"] for m in second["results"]] == ["b.py::f"]
    state = think.client.get("/api/knowledge/state/think").json()
    assert state["inbox"]["position"] == first["ack"]
    # not acked yet: the second page comes again on a read without ack
    assert [m["seq"] for m in inbox(think)["results"]] == [m["seq"] for m in second["results"]]


def refused(persona, **params):
    r = persona.client.get(f"/api/knowledge/receive/{persona.name}", params)
    body = r.json()
    assert set(body) == {"detail", "errors"}, body
    return r.status_code, body


def test_a_stale_foreign_or_premature_ack_is_refused(analysis, think):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    first = inbox(think)
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::f"))
    top = Event.objects.order_by("-seq").first().seq
    # beyond what was offered: the second broadcast was never in a page
    status, body = refused(think, ack=top)
    assert status == 409 and "beyond what think's inbox delivered" in body["errors"]["ack"][0]
    second = inbox(think, ack=first["ack"])
    # stale: behind the cursor (already acknowledged)
    status, body = refused(think, ack=first["ack"] - 1)
    assert status == 409 and "stale" in body["errors"]["ack"][0]
    # foreign: a page of another epoch of the log
    other = "00000000-0000-4000-8000-000000000000"
    status, body = refused(think, ack=second["ack"], epoch=other)
    assert status == 409 and other in body["errors"]["ack"][0]
    assert refused(think, ack="x")[0] == 400
    assert refused(think, ack=second["ack"], epoch="nope")[1]["errors"] == {
        "epoch": ["not an epoch (a UUID)"]
    }
    assert think.client.get("/api/knowledge/receive/dream", {"ack": 1}).status_code == 403
    # nothing moved: the second page is still there
    cursor = InboxCursor.objects.get(worker=think.worker)
    assert cursor.position == first["ack"]
    assert [m["seq"] for m in inbox(think)["results"]] == [m["seq"] for m in second["results"]]


def test_an_ack_after_a_log_reset_lets_the_read_recover(analysis, think):
    from knowledge.actions import do_reset_event_log

    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    page = inbox(think)
    do_reset_event_log()
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::f"))
    # the ack names the page's epoch, which the cursor is still in: accepted, then the
    # resume rule says the log moved on
    after = inbox(think, ack=page["ack"], epoch=page["epoch"])
    assert after["recovered"] is False and after["epoch"] != page["epoch"]
    assert after["position"] == after["top"]
    # a later ack of the old epoch is foreign now
    status, body = refused(think, ack=after["ack"], epoch=page["epoch"])
    assert status == 409 and "epoch" in body["errors"]["ack"][0]
