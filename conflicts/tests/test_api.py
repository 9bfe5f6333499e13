"""The conflict API as workers and people use it."""

from __future__ import annotations

import pytest

from conflicts.choices import ConflictStatus
from conflicts.models import Conflict
from conftest import Persona, risk_payload
from knowledge.choices import ItemStatus
from knowledge.models import KnowledgeItem

pytestmark = pytest.mark.django_db


@pytest.fixture
def disputed(think, analysis):
    """think says high, analysis says low about one pattern: one conflict in review."""
    a = think.broadcast("risk_pattern", risk_payload(level="high"), 0.8).json()["item"]["id"]
    body = analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.8).json()
    return {"conflict": body["conflicts"][0], "high": a, "low": body["item"]["id"]}


def test_list_filters_and_detail_show_evidence(
    disputed, think, staff_client, django_assert_max_num_queries
):
    for i in range(3):
        think.broadcast("risk_pattern", risk_payload(f"other {i}", "high"), 0.8)
        Persona(f"x{i}").broadcast("risk_pattern", risk_payload(f"other {i}", "low"), 0.8)
    with django_assert_max_num_queries(8):
        body = think.client.get("/api/knowledge/conflicts", {"limit": 2}).json()
    assert [c["id"] for c in body["results"]] == sorted(
        [c["id"] for c in body["results"]], reverse=True
    )
    assert len(body["results"]) == 2 and body["next"]
    rest = think.client.get(body["next"]).json()
    assert len(rest["results"]) == 2 and rest["next"] is None

    only = think.client.get("/api/knowledge/conflicts", {"worker": "analysis"}).json()["results"]
    assert [c["id"] for c in only] == [disputed["conflict"]]
    assert only[0]["workers"] == ["analysis", "think"]
    assert (
        think.client.get("/api/knowledge/conflicts", {"status": "resolved"}).json()["results"] == []
    )
    assert (
        len(
            think.client.get(
                "/api/knowledge/conflicts", {"status": "pending_review", "type": "risk_pattern"}
            ).json()["results"]
        )
        == 4
    )

    bad = think.client.get("/api/knowledge/conflicts", {"status": "nope"})
    assert bad.status_code == 400 and "status" in bad.json()["errors"]

    detail = staff_client.get(f"/api/knowledge/conflicts/{disputed['conflict']}").json()
    claims = {row["item"]["claim"]: row for row in detail["items"]}
    assert set(claims) == {"high", "low"}
    assert claims["high"]["trust"] == 0.5 and 0 < claims["high"]["freshness"] <= 1
    assert detail["proposal"]["strategy"] == "truth"


def test_staff_resolves_workers_may_not(disputed, think, staff_client):
    denied = think.client.post(
        "/api/knowledge/resolve",
        {"conflict": disputed["conflict"], "decision": "dismiss"},
        format="json",
    )
    assert denied.status_code == 403
    missing = staff_client.post(
        "/api/knowledge/resolve",
        {"conflict": disputed["conflict"], "decision": "pick"},
        format="json",
    )
    assert missing.status_code == 400 and "winner_item" in missing.json()["errors"]
    wrong = staff_client.post(
        "/api/knowledge/resolve",
        {"conflict": disputed["conflict"], "decision": "pick", "winner_item": 999999},
        format="json",
    )
    assert wrong.status_code == 400 and "winner_item" in wrong.json()["errors"]
    stale = staff_client.post(
        "/api/knowledge/resolve",
        {"conflict": disputed["conflict"], "decision": "dismiss", "version": 99},
        format="json",
    )
    assert stale.status_code == 409

    ok = staff_client.post(
        "/api/knowledge/resolve",
        {
            "conflict": disputed["conflict"],
            "decision": "pick",
            "winner_item": disputed["low"],
            "note": "measured",
        },
        format="json",
    )
    assert ok.status_code == 200 and ok.json()["status"] == "resolved"
    assert KnowledgeItem.objects.get(pk=disputed["high"]).status == ItemStatus.SUPERSEDED
    again = staff_client.post(
        "/api/knowledge/resolve",
        {"conflict": disputed["conflict"], "decision": "accept"},
        format="json",
    )
    assert again.status_code == 409
    assert (
        staff_client.post(
            "/api/knowledge/resolve", {"conflict": 424242, "decision": "accept"}, format="json"
        ).status_code
        == 404
    )

    detail = staff_client.get(f"/api/knowledge/conflicts/{disputed['conflict']}").json()
    assert [r["decision"] for r in detail["resolutions"]] == ["pick"]
    assert detail["resolutions"][0]["note"] == "measured"
    # the loser's query no longer returns the superseded item
    q = think.client.get("/api/knowledge/query", {"types": "risk_pattern"}).json()
    assert [i["claim"] for i in q["results"]] == ["low"]


def test_flag_and_request_resolution(think, analysis, staff_client):
    a = think.broadcast("risk_pattern", risk_payload("x", "high"), 0.8).json()["item"]["id"]
    b = analysis.broadcast("risk_pattern", risk_payload("y", "low"), 0.8).json()["item"]["id"]
    flagged = think.client.post(
        "/api/knowledge/conflicts/flag", {"items": [a, b], "reason": "same thing"}, format="json"
    )
    assert flagged.status_code == 201
    body = flagged.json()
    assert (
        body["classification"] == "flagged"
        and body["flagged_by"] == "think"
        and body["status"] == "pending_review"
    )
    assert (
        think.client.post(
            "/api/knowledge/conflicts/flag", {"items": [a]}, format="json"
        ).status_code
        == 400
    )
    assert (
        think.client.post(
            "/api/knowledge/conflicts/flag", {"items": [a, 99999]}, format="json"
        ).status_code
        == 404
    )

    # a conflict in its settle window: a worker asks for a decision now
    think.broadcast("risk_pattern", risk_payload("z", "high"), 0.8)
    from django.conf import settings
    from django.test import override_settings

    with override_settings(
        KNOWLEDGE_EXCHANGE={**settings.KNOWLEDGE_EXCHANGE, "conflict_settle_seconds": 3600}
    ):
        cid = analysis.broadcast("risk_pattern", risk_payload("z", "low"), 0.8).json()["conflicts"][
            0
        ]
    assert Conflict.objects.get(pk=cid).status == ConflictStatus.OPEN
    r = analysis.client.post(
        f"/api/knowledge/conflicts/{cid}/request-resolution", {"note": "blocking me"}, format="json"
    )
    assert (
        r.status_code == 200
        and r.json()["status"] == "pending_review"
        and r.json()["review_requests"] == 1
    )
    staff_client.post(
        "/api/knowledge/resolve", {"conflict": cid, "decision": "dismiss"}, format="json"
    )
    assert (
        analysis.client.post(
            f"/api/knowledge/conflicts/{cid}/request-resolution", {}, format="json"
        ).status_code
        == 409
    )


def test_resolution_stats_stats_section_and_metrics(disputed, think, staff_client):
    staff_client.post(
        "/api/knowledge/resolve",
        {"conflict": disputed["conflict"], "decision": "accept"},
        format="json",
    )
    stats = think.client.get("/api/knowledge/resolution-stats").json()
    assert stats["by_status"]["resolved"] == 1 and stats["unresolved"] == 0
    assert stats["engine_precision"] == {"human_decisions": 1, "agreed": 1, "precision": 1.0}
    assert stats["median_seconds_to_resolve"] is not None
    assert stats["auto_resolve_rate"] == 0.0
    section = think.client.get("/api/knowledge/stats").json()["conflicts"]
    assert section["by_status"]["resolved"] == 1
    metrics = think.client.get("/metrics").content.decode()
    assert 'kx_conflicts{status="resolved"} 1.0' in metrics
    assert "kx_conflicts_unresolved 0.0" in metrics


def test_time_and_classification_filters(disputed, think):
    from datetime import timedelta

    from django.utils import timezone

    opened = Conflict.objects.get(pk=disputed["conflict"]).opened_at
    after = (opened - timedelta(seconds=1)).isoformat()
    before = (opened + timedelta(seconds=1)).isoformat()
    get = think.client.get
    assert len(get("/api/knowledge/conflicts", {"opened_after": after}).json()["results"]) == 1
    assert get("/api/knowledge/conflicts", {"opened_before": after}).json()["results"] == []
    assert (
        len(
            get(
                "/api/knowledge/conflicts",
                {"opened_before": before, "classification": "contradiction"},
            ).json()["results"]
        )
        == 1
    )
    assert get("/api/knowledge/conflicts", {"classification": "flagged"}).json()["results"] == []
    assert (
        get("/api/knowledge/conflicts", {"resolved_after": timezone.now().isoformat()}).json()[
            "results"
        ]
        == []
    )
    bad = get("/api/knowledge/conflicts", {"opened_after": "yesterday"})
    assert bad.status_code == 400 and "opened_after" in bad.json()["errors"]
