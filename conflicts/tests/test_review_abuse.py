"""A worker cannot block reviewers, and one person's verdicts count once (issue 10, #5)."""

from __future__ import annotations

import pytest

from conftest import risk_payload
from knowledge.choices import ValidationStatus
from knowledge.models import KnowledgeItem

pytestmark = pytest.mark.django_db


@pytest.fixture
def disputed(think, analysis):
    think.broadcast("risk_pattern", risk_payload("hot path", "high"), 0.8)
    body = analysis.broadcast("risk_pattern", risk_payload("hot path", "low"), 0.8).json()
    [cid] = body["conflicts"]
    return cid


def decide_with(staff_client, cid, version):
    r = staff_client.post(
        "/api/knowledge/resolve",
        {"conflict": cid, "decision": "dismiss", "version": version},
        format="json",
    )
    assert r.status_code == 200, r.json()
    return r.json()


def request_review(persona, cid, **body):
    return persona.client.post(
        f"/api/knowledge/conflicts/{cid}/request-resolution", body, format="json"
    )


def test_a_worker_hammering_request_resolution_never_makes_a_decision_409(
    disputed, analysis, staff_client
):
    loaded = staff_client.get(f"/api/knowledge/conflicts/{disputed}").json()
    answers = [request_review(analysis, disputed, note="decide!").status_code for _ in range(20)]
    assert answers[0] == 200 and set(answers[1:]) == {429}
    assert decide_with(staff_client, disputed, loaded["version"])["review_requests"] == 1


def test_requests_never_change_the_version_a_reviewer_holds(
    disputed, analysis, think, staff_client, settings
):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "review_request_interval": 0}
    loaded = staff_client.get(f"/api/knowledge/conflicts/{disputed}").json()
    for persona in (analysis, think) * 10:
        assert request_review(persona, disputed).status_code == 200
    assert decide_with(staff_client, disputed, loaded["version"])["review_requests"] == 20


def test_too_soon_answers_429_with_retry_after_and_the_field(disputed, analysis, settings):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "review_request_interval": 90}
    assert request_review(analysis, disputed).status_code == 200
    again = request_review(analysis, disputed)
    assert again.status_code == 429
    assert again["Retry-After"] == "90" and "conflict" in again.json()["errors"]


def test_only_workers_whose_items_take_part_may_request_review(disputed, think, dream):
    outsider = request_review(dream, disputed)
    assert outsider.status_code == 403 and "conflict" in outsider.json()["errors"]
    assert request_review(think, disputed).status_code == 200
    assert request_review(dream, 987654).status_code == 404


def test_one_person_confirming_three_times_counts_once(think, analysis, learning, staff_client):
    item = think.broadcast("risk_pattern", risk_payload("lock order"), 0.8).json()["item"]["id"]

    def validate(client, verdict):
        r = client.post(
            "/api/knowledge/validate", {"item": item, "verdict": verdict}, format="json"
        )
        assert r.status_code == 200, r.json()
        return r.json()["validation_status"]

    validate(analysis.client, "disputed")
    validate(learning.client, "disputed")
    for _ in range(3):
        status = validate(staff_client, "confirmed")
    assert status == ValidationStatus.DISPUTED  # 1 confirmation against 2 disputes
    # The person's latest verdict replaces their earlier one.
    assert validate(staff_client, "disputed") == ValidationStatus.DISPUTED
    assert KnowledgeItem.objects.get(pk=item).validations.count() == 3
