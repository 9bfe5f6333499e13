"""A claim a resolution overruled is not restated on the same evidence (``restates_overruled``).

Before, a worker whose claim lost said it again at its next broadcast whenever anything else in
the body changed (a score, a sample count): each restatement opened a new conflict that was
settled against it at once, the loop the click replay showed (docs/workers.md).
"""

from __future__ import annotations

import pytest

from conflicts import actions
from conflicts.models import Conflict
from knowledge.models import KnowledgeItem
from kx_sdk import BaseWorker
from workers.inprocess import InProcessTransport

# Events are published after commit: real transactions.
pytestmark = pytest.mark.django_db(transaction=True)

SUBJECT = "rule:high_complexity|churn:high"


class RiskWorker(BaseWorker):
    interval = 0.0

    def claim_of(self, body):
        payload = body["payload"]
        return payload["pattern"], payload["risk_level"]


def risk(level: str, score: float, confidence: float, pattern: str = SUBJECT) -> dict:
    payload = {"pattern": pattern, "risk_level": level, "risk_score": score}
    return {"knowledge_type": "risk_pattern", "payload": payload, "confidence": confidence}


def overrule(conflict: Conflict, winner_id: int, user) -> None:
    """A person picks the observed claim (the engine may already have settled it)."""
    conflict.refresh_from_db()
    if conflict.resolved_at is None:
        actions.do_resolve(conflict.pk, "pick", user=user, winner_item_id=winner_id)


def test_a_worker_does_not_restate_an_overruled_claim_until_its_evidence_moves(
    analysis, learning, django_user_model
):
    alice = django_user_model.objects.create_user("alice", is_staff=True)
    worker = RiskWorker(InProcessTransport(analysis.worker))
    [first] = worker.broadcast_many([risk("medium", 0.40, 0.60)])
    observed = learning.broadcast("risk_pattern", {"pattern": SUBJECT, "risk_level": "low"}, 0.9)
    observed_id = observed.json()["item"]["id"]
    overrule(Conflict.objects.get(pk=observed.json()["conflicts"][0]), observed_id, alice)
    worker.receive()  # the resolution reaches the loser's inbox
    assert KnowledgeItem.objects.get(pk=first["item"]["id"]).status == "superseded"

    # New evidence, same level, hardly more confident: not said again, no new conflict.
    assert worker.broadcast_many([risk("medium", 0.45, 0.62)]) == []
    assert worker.broadcast_many([risk("medium", 0.30, 0.55)]) == []
    assert worker.stats.overruled_skipped == 2
    assert Conflict.objects.count() == 1
    # Nothing deleted: the overruled item stays, superseded; no active item of the worker.
    mine = KnowledgeItem.objects.filter(source=analysis.worker, knowledge_type="risk_pattern")
    assert [i.status for i in mine] == ["superseded"]
    # Another subject is not affected.
    assert len(worker.broadcast_many([risk("medium", 0.4, 0.6, pattern="rule:other")])) == 1

    # Much stronger evidence for the same level is a real new disagreement: it is stated.
    [again] = worker.broadcast_many([risk("medium", 0.45, 0.75)])
    assert again["conflicts"] and Conflict.objects.count() == 2
    overrule(Conflict.objects.get(pk=again["conflicts"][0]), observed_id, alice)
    worker.receive()
    assert worker.broadcast_many([risk("medium", 0.47, 0.80)]) == []

    # A change of level is stated and raises a new conflict.
    [moved] = worker.broadcast_many([risk("high", 0.55, 0.80)])
    assert moved["conflicts"] and Conflict.objects.count() == 3
    assert worker.stats.overruled_skipped == 3
