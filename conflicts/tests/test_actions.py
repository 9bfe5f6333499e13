"""Detection and resolution through the real broadcast path."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

from conflicts import actions
from conflicts.choices import Classification, ConflictStatus, Decision
from conflicts.models import Conflict, Resolution, SourceTrust
from conftest import Persona, risk_payload
from knowledge.choices import EventKind, ItemStatus
from knowledge.errors import ActionError
from knowledge.models import Event, KnowledgeItem

pytestmark = pytest.mark.django_db


def ke(**overrides):
    return override_settings(KNOWLEDGE_EXCHANGE={**settings.KNOWLEDGE_EXCHANGE, **overrides})


def test_contradiction_goes_to_review_when_the_engine_is_unsure(think, analysis):
    # Given two sources with prior trust disagreeing about one pattern
    first = think.broadcast("risk_pattern", risk_payload(level="high"), 0.8).json()
    second = analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.8).json()
    # Then the second broadcast raised one contradiction, waiting for a person
    assert first["conflicts"] == []
    assert len(second["conflicts"]) == 1
    conflict = Conflict.objects.get(pk=second["conflicts"][0])
    assert conflict.classification == Classification.CONTRADICTION
    assert conflict.status == ConflictStatus.PENDING_REVIEW
    assert conflict.margin < 0.85
    assert set(conflict.items.values_list("pk", flat=True)) == {
        first["item"]["id"],
        second["item"]["id"],
    }
    # Nothing was superseded, and both workers were told
    assert KnowledgeItem.objects.filter(status=ItemStatus.ACTIVE).count() == 2
    detected = Event.objects.get(kind=EventKind.CONFLICT_DETECTED)
    assert detected.data["workers"] == ["analysis", "think"]


def test_corroboration_and_other_subjects_raise_nothing(think, analysis):
    think.broadcast("risk_pattern", risk_payload("a", "high"), 0.8)
    assert (
        analysis.broadcast("risk_pattern", risk_payload("a", "high"), 0.7).json()["conflicts"] == []
    )
    assert (
        analysis.broadcast("risk_pattern", risk_payload("b", "low"), 0.7).json()["conflicts"] == []
    )
    # a different type with the same subject string
    assert (
        analysis.broadcast(
            "learned_pattern",
            {"pattern": "a", "effect": "ineffective", "success_rate": 0.2, "samples": 5},
            0.7,
        ).status_code
        == 201
    )
    assert Conflict.objects.count() == 0


def test_confidence_mismatch_is_recorded_for_review(think, analysis):
    think.broadcast("risk_pattern", risk_payload("a", "high"), 0.95)
    body = analysis.broadcast("risk_pattern", risk_payload("a", "high"), 0.3).json()
    conflict = Conflict.objects.get(pk=body["conflicts"][0])
    assert conflict.classification == Classification.CONFIDENCE_MISMATCH
    assert conflict.status == ConflictStatus.PENDING_REVIEW


@pytest.mark.django_db(transaction=True)  # reads an inbox: committed events only
def test_trusted_majority_is_applied_at_once_and_losers_superseded():
    sources = [Persona(f"w{i}") for i in range(4)]
    for p in sources[:3]:
        SourceTrust.objects.create(worker=p.worker, knowledge_type="risk_pattern", alpha=40, beta=2)
    for p in sources[:3]:
        p.broadcast("risk_pattern", risk_payload(level="high"), 0.9)
    loser = sources[3].broadcast("risk_pattern", risk_payload(level="low"), 0.6).json()
    conflict = Conflict.objects.get()
    assert conflict.status == ConflictStatus.AUTO_RESOLVED
    assert conflict.decided_claim == "high"
    # the loser's own broadcast answer already says it lost
    assert loser["item"]["status"] == "superseded" and loser["conflicts"] == [conflict.pk]
    item = KnowledgeItem.objects.get(pk=loser["item"]["id"])
    assert item.status == ItemStatus.SUPERSEDED and item.superseded_by is not None
    res = Resolution.objects.get()
    assert res.decision == Decision.AUTO and res.superseded_item_ids == [item.pk]
    assert {c["source"] for c in res.inputs} == {"w0", "w1", "w2", "w3"}
    resolved = Event.objects.get(kind=EventKind.KNOWLEDGE_RESOLVED)
    assert "w3" in resolved.data["workers"]
    # the loser's trust went down, the winners' up
    assert SourceTrust.objects.get(worker=sources[3].worker).mean < 0.5
    # the loser finds the resolution in its inbox
    inbox = sources[3].client.get("/api/knowledge/receive/w3").json()
    kinds = [
        e["event"] if "event" in e else e.get("kind")
        for e in inbox.get("events", inbox.get("results", []))
    ]
    assert "knowledge_resolved" in kinds


def test_person_picks_a_winner_and_second_attempt_is_409(think, analysis, django_user_model):
    alice = django_user_model.objects.create_user("alice", is_staff=True)
    a = think.broadcast("risk_pattern", risk_payload(level="high"), 0.8).json()["item"]["id"]
    body = analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.8).json()
    cid = body["conflicts"][0]
    conflict = actions.do_resolve(
        cid, "pick", user=alice, winner_item_id=a, note="checked the code"
    )
    assert conflict.status == ConflictStatus.RESOLVED and conflict.decided_by == "user:alice"
    assert KnowledgeItem.objects.get(pk=body["item"]["id"]).status == ItemStatus.SUPERSEDED
    with pytest.raises(ActionError) as err:
        actions.do_resolve(cid, "dismiss", user=alice)
    assert err.value.status == 409
    # human decisions weigh 3: think won once -> Beta(5, 2)
    assert SourceTrust.objects.get(worker=think.worker).alpha == pytest.approx(5.0)
    assert Resolution.objects.count() == 1


def test_source_repeating_the_other_claim_dissolves_the_conflict(think, analysis):
    think.broadcast("risk_pattern", risk_payload(level="high"), 0.8)
    cid = analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.8).json()["conflicts"][0]
    analysis.broadcast("risk_pattern", risk_payload(level="high"), 0.8)  # revised: agrees now
    conflict = Conflict.objects.get(pk=cid)
    assert conflict.status == ConflictStatus.DISMISSED and conflict.decision == Decision.DISSOLVED


def test_settle_window_waits_then_sweep_applies(db):
    from datetime import timedelta

    import time_machine
    from django.utils import timezone

    sources = [Persona(f"w{i}") for i in range(4)]
    for p in sources[:3]:
        # Pinned: the sweep re-estimates learned trust from the (here empty) history.
        actions.do_pin_trust(p.worker, "risk_pattern", 0.95)
    with ke(conflict_settle_seconds=3600):
        for p in sources:
            p.broadcast(
                "risk_pattern", risk_payload(level="high" if p.name != "w3" else "low"), 0.9
            )
        conflict = Conflict.objects.get()
        assert conflict.status == ConflictStatus.OPEN
        assert actions.sweep_conflicts() == 0
        with time_machine.travel(timezone.now() + timedelta(hours=2)):
            assert actions.sweep_conflicts() == 1
        conflict.refresh_from_db()
        assert conflict.status == ConflictStatus.AUTO_RESOLVED


def test_shadow_mode_records_proposal_but_applies_nothing(db):
    sources = [Persona(f"w{i}") for i in range(4)]
    for p in sources[:3]:
        SourceTrust.objects.create(worker=p.worker, knowledge_type="risk_pattern", alpha=40, beta=2)
    with ke(conflict_auto_resolve=False):
        for p in sources:
            p.broadcast(
                "risk_pattern", risk_payload(level="high" if p.name != "w3" else "low"), 0.9
            )
    conflict = Conflict.objects.get()
    assert conflict.status == ConflictStatus.PENDING_REVIEW
    assert conflict.proposed_claim == "high" and conflict.margin >= 0.85


def test_disabled_detects_nothing(think, analysis):
    with ke(conflict_resolution_enabled=False):
        think.broadcast("risk_pattern", risk_payload(level="high"), 0.8)
        assert (
            analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.8).json()["conflicts"]
            == []
        )
    assert Conflict.objects.count() == 0


def test_worker_flags_two_items(think, analysis):
    a = think.broadcast("risk_pattern", risk_payload("x", "high"), 0.8).json()["item"]["id"]
    b = analysis.broadcast("risk_pattern", risk_payload("y", "low"), 0.8).json()["item"]["id"]
    conflict = actions.do_flag_conflict(think.worker, [a, b], "y is x renamed")
    assert conflict.classification == Classification.FLAGGED
    assert conflict.status == ConflictStatus.PENDING_REVIEW
    assert conflict.flagged_by == think.worker
    # flagging again returns the same conflict
    assert actions.do_flag_conflict(analysis.worker, [b, a], "again").pk == conflict.pk
    with pytest.raises(ActionError) as err:
        actions.do_flag_conflict(think.worker, [a], "alone")
    assert err.value.field == "items"


def test_worker_trust_pin_overrides_learned_trust_for_every_type(think, analysis):
    from conflicts.evidence import conflict_evidence

    SourceTrust.objects.create(worker=think.worker, knowledge_type="risk_pattern", alpha=2, beta=40)
    actions.do_pin_trust(analysis.worker, "risk_pattern", 0.2)
    think.worker.trust_pin = 0.9
    think.worker.save(update_fields=["trust_pin"])
    think.broadcast("risk_pattern", risk_payload(level="high"), 0.8)
    cid = analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.8).json()["conflicts"][0]
    rows = {r["item"]["source"]: r for r in conflict_evidence(Conflict.objects.get(pk=cid))}
    assert rows["think"]["trust"] == 0.9 and rows["think"]["trust_pinned"]
    assert rows["analysis"]["trust"] == 0.2
    # the engine used the pinned values
    proposal = Conflict.objects.get(pk=cid).proposal
    used = {c["source"]: c["trust"]["mean"] for c in proposal["inputs"]["candidates"]}
    assert used == {"think": 0.9, "analysis": 0.2}
    assert proposal["winner_claim"] == "high"


def test_resolution_invalidates_the_query_cache(
    think, analysis, staff_client, django_capture_on_commit_callbacks
):
    think.broadcast("risk_pattern", risk_payload(level="high"), 0.8)
    cid = analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.8).json()["conflicts"][0]
    first = think.client.get("/api/knowledge/query", {"types": "risk_pattern"}).json()["results"]
    assert len(first) == 2
    alice = staff_client.user
    with django_capture_on_commit_callbacks(execute=True):
        actions.do_resolve(cid, "accept", user=alice)
    again = think.client.get("/api/knowledge/query", {"types": "risk_pattern"}).json()["results"]
    assert len(again) == 1


def test_mismatch_dissolves_when_its_other_item_is_superseded(db):
    a, b, c = Persona("a"), Persona("b"), Persona("c")
    for p in (a, b):
        SourceTrust.objects.create(worker=p.worker, knowledge_type="risk_pattern", alpha=40, beta=2)
    a.broadcast("risk_pattern", risk_payload(level="high"), 0.95)
    mismatch_id = c.broadcast("risk_pattern", risk_payload(level="high"), 0.3).json()["conflicts"][
        0
    ]
    assert Conflict.objects.get(pk=mismatch_id).classification == Classification.CONFIDENCE_MISMATCH
    # c changes its mind to "low": its "high" item is revised away, the mismatch has one item left
    c.broadcast("risk_pattern", risk_payload(level="low"), 0.3)
    mismatch = Conflict.objects.get(pk=mismatch_id)
    assert mismatch.status == ConflictStatus.DISMISSED and mismatch.decision == Decision.DISSOLVED
