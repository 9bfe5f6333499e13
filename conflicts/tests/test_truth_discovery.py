"""Calibrated truth discovery through the real path (issue 12): fresh sources, the sweep
that re-estimates trust from all the evidence and settles yesterday's pending conflicts."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

from conflicts import actions, reliability
from conflicts.choices import Actor, ConflictStatus, Decision
from conflicts.models import Conflict, Resolution, SourceTrust
from conftest import Persona, risk_payload
from knowledge.choices import ItemStatus
from knowledge.models import KnowledgeItem

pytestmark = pytest.mark.django_db


def truth_engine(**overrides):
    ke = {**settings.KNOWLEDGE_EXCHANGE, "resolution_strategy": "truth", **overrides}
    return override_settings(KNOWLEDGE_EXCHANGE=ke)


@pytest.mark.parametrize(
    ("first", "second", "status"),
    [
        (0.99, 0.10, ConflictStatus.AUTO_RESOLVED),
        (0.80, 0.75, ConflictStatus.PENDING_REVIEW),
        (0.70, 0.70, ConflictStatus.PENDING_REVIEW),
    ],
)
def test_two_fresh_sources_resolve_when_stated_confidence_is_decisive(
    think, analysis, first, second, status
):
    with truth_engine():
        sure = think.broadcast("risk_pattern", risk_payload(level="high"), first).json()
        body = analysis.broadcast("risk_pattern", risk_payload(level="low"), second).json()
    conflict = Conflict.objects.get(pk=body["conflicts"][0])
    assert conflict.status == status
    # The stored margin is the posterior probability of the proposed claim.
    assert conflict.margin == pytest.approx(conflict.proposal["scores"][conflict.proposed_claim])
    if status == ConflictStatus.AUTO_RESOLVED:
        assert conflict.decided_claim == "high"
        assert KnowledgeItem.objects.get(pk=body["item"]["id"]).status == ItemStatus.SUPERSEDED
        assert KnowledgeItem.objects.get(pk=sure["item"]["id"]).status == ItemStatus.ACTIVE


def test_sweep_settles_a_pending_conflict_once_decisions_move_trust(db, django_user_model):
    alice = django_user_model.objects.create_user("alice", is_staff=True)
    good, bad = Persona("good"), Persona("bad")
    with truth_engine():
        # Yesterday: two unknown sources disagree, equally sure: it waits for a person.
        good.broadcast("risk_pattern", risk_payload("pending", "high"), 0.8)
        pending = bad.broadcast("risk_pattern", risk_payload("pending", "low"), 0.8).json()
        conflict = Conflict.objects.get(pk=pending["conflicts"][0])
        assert conflict.status == ConflictStatus.PENDING_REVIEW
        # Since: they disagreed on six other subjects; a person decided the first ones for
        # `good`, after which the engine was sure enough to apply the same on its own.
        decided = 0
        for i in range(6):
            win = good.broadcast("risk_pattern", risk_payload(f"p{i}", "high"), 0.8).json()
            cid = bad.broadcast("risk_pattern", risk_payload(f"p{i}", "low"), 0.8).json()
            other = Conflict.objects.get(pk=cid["conflicts"][0])
            if other.status == ConflictStatus.PENDING_REVIEW:
                actions.do_resolve(
                    other.pk, Decision.PICK, user=alice, winner_item_id=win["item"]["id"]
                )
                decided += 1
        assert 1 <= decided < 6
        conflict.refresh_from_db()
        assert conflict.status == ConflictStatus.PENDING_REVIEW  # nothing re-evaluated it yet
        # When the sweep runs, trust is re-estimated from all the evidence ...
        assert reliability.sweep() == 1
    bad_trust = SourceTrust.objects.get(worker=bad.worker, knowledge_type="risk_pattern")
    good_trust = SourceTrust.objects.get(worker=good.worker, knowledge_type="risk_pattern")
    assert bad_trust.alpha / (bad_trust.alpha + bad_trust.beta) < 0.2
    assert good_trust.alpha / (good_trust.alpha + good_trust.beta) > 0.8
    # The error model is stored with it: two claims seen, so wrong reports spread over 2.
    assert good_trust.spread == pytest.approx(2.0) and bad_trust.spread == pytest.approx(2.0)
    # ... and yesterday's conflict resolved itself, with a history row and its inputs.
    conflict.refresh_from_db()
    assert conflict.status == ConflictStatus.AUTO_RESOLVED
    assert conflict.decided_claim == "high" and conflict.margin >= 0.85
    res = Resolution.objects.filter(conflict=conflict).get()
    assert res.actor == Actor.AUTO
    assert {c["source"] for c in res.inputs} == {"good", "bad"}
    assert all("trust" in c and "spread" in c["trust"] for c in res.inputs)
    loser = KnowledgeItem.objects.get(pk=pending["item"]["id"])
    assert loser.status == ItemStatus.SUPERSEDED  # superseded, not deleted


def test_sweep_leaves_undecidable_conflicts_untouched(think, analysis):
    with truth_engine():
        think.broadcast("risk_pattern", risk_payload(level="high"), 0.7)
        cid = analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.7).json()[
            "conflicts"
        ][0]
        version = Conflict.objects.get(pk=cid).version
        assert reliability.sweep() == 0
    conflict = Conflict.objects.get(pk=cid)
    # A reviewer looking at it is not sent a 409 by the sweep.
    assert conflict.status == ConflictStatus.PENDING_REVIEW and conflict.version == version


def test_trust_pin_survives_the_re_estimate(think, analysis):
    actions.do_pin_trust(analysis.worker, "risk_pattern", 0.95)
    with truth_engine():
        think.broadcast("risk_pattern", risk_payload(level="high"), 0.7)
        analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.7)
        reliability.sweep()
    row = SourceTrust.objects.get(worker=analysis.worker, knowledge_type="risk_pattern")
    assert row.pinned == 0.95


def test_query_marks_contested_items_and_filters_on_it(think, analysis, recall, django_user_model):
    with truth_engine():
        a = think.broadcast("risk_pattern", risk_payload(level="high"), 0.8).json()["item"]
        b = analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.7).json()
        quiet = recall.broadcast("risk_pattern", risk_payload("elsewhere", "low"), 0.8).json()
    cid = b["conflicts"][0]
    conflict = Conflict.objects.get(pk=cid)
    rows = {
        r["id"]: r
        for r in think.client.get("/api/knowledge/query?types=risk_pattern").json()["results"]
    }
    assert rows[a["id"]]["contested"] is True and rows[a["id"]]["conflict_id"] == cid
    assert rows[a["id"]]["claim_probability"] == pytest.approx(conflict.proposal["scores"]["high"])
    assert rows[b["item"]["id"]]["claim_probability"] < rows[a["id"]]["claim_probability"]
    assert rows[quiet["item"]["id"]]["contested"] is False
    assert rows[quiet["item"]["id"]]["conflict_id"] is None

    only = think.client.get("/api/knowledge/query?contested=true").json()["results"]
    assert {r["id"] for r in only} == {a["id"], b["item"]["id"]}
    others = think.client.get("/api/knowledge/query?contested=false").json()["results"]
    assert {r["id"] for r in others} == {quiet["item"]["id"]}
    detail = think.client.get(f"/api/knowledge/items/{a['id']}").json()
    assert detail["contested"] is True and detail["conflict_id"] == cid
    assert think.client.get("/api/knowledge/query?contested=maybe").status_code == 400

    # Once a person decides, the winner is no longer contested (not served from the cache).
    alice = django_user_model.objects.create_user("alice", is_staff=True)
    actions.do_resolve(cid, Decision.PICK, user=alice, winner_item_id=a["id"])
    rows = think.client.get("/api/knowledge/query?types=risk_pattern").json()["results"]
    assert {r["id"]: r["contested"] for r in rows}[a["id"]] is False


def test_a_cached_page_with_no_contested_type_makes_no_query_and_a_new_conflict_shows_at_once(
    think, analysis, django_assert_num_queries
):
    """Contested marks cost a query only for pages whose types have an unsettled conflict
    (conflicts/contested.py); opening one is seen by the very next page, cached or not."""
    first = think.broadcast("risk_pattern", risk_payload(level="high"), 0.8).json()["item"]
    url = "/api/knowledge/query?types=risk_pattern"
    assert think.client.get(url).json()["cached"] is False
    with django_assert_num_queries(0):
        page = think.client.get(url).json()
    assert page["cached"] is True and page["results"][0]["contested"] is False

    with truth_engine():
        b = analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.7).json()
    cid = b["conflicts"][0]
    rows = {r["id"]: r for r in think.client.get(url).json()["results"]}
    assert rows[first["id"]]["contested"] is True and rows[first["id"]]["conflict_id"] == cid
