"""The lean validator of bulk items (knowledge/api/lean_validation.py) and DRF agree.

Bulk items and the bulk envelope are validated by ``LeanValidator``; a single broadcast by
``BroadcastSerializer``. Whatever an item holds, the lean validator either returns exactly
what the serializer returns, or nothing (then the serializer decides and words the errors):
it never accepts what DRF rejects, and a client reads the same errors from both endpoints.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from conftest import issue_payload, risk_payload
from knowledge.api.errors import _flatten
from knowledge.api.lean_validation import LeanValidator
from knowledge.api.serializers import BroadcastSerializer, BulkBroadcastSerializer
from knowledge.models import Event, KnowledgeItem

pytestmark = pytest.mark.django_db

PAST = (timezone.now() - timedelta(days=1)).isoformat()


def item(**fields):
    return {
        "knowledge_type": "issue_pattern",
        "payload": issue_payload(),
        "confidence": 0.5,
        **fields,
    }


# Valid items in the shapes JSON clients send: the lean validator must recognise them.
PLAIN = [
    item(),
    item(confidence=1, urgency="critical"),
    item(confidence=0),
    item(confidence=0.999, idempotency_key="k" * 100, source="analysis"),
    item(targets=["think"], observed_at=None, idempotency_key=None),
    item(targets=[], payload={**issue_payload(), "note": None, "n": [1, {"a": "é"}]}),
    item(extra="ignored", lean=True),
    {"knowledge_type": "risk_pattern", "payload": risk_payload(), "confidence": 0.7},
]

# Valid too, in other shapes: the serializer's own field code handles them (same result).
OTHER_VALID = [
    item(observed_at=PAST),
    item(confidence="0.5"),
    item(confidence=True),
    item(knowledge_type=" issue_pattern "),
    item(idempotency_key="  padded  "),
    item(idempotency_key="clé-é"),
    item(idempotency_key=5.5),
    item(targets=[" think "]),
    item(source="analysis "),
    item(payload={1: "non-string key", **issue_payload()}),
]

INVALID = [
    item(knowledge_type="nope"),
    item(knowledge_type=""),
    item(knowledge_type="   "),
    item(knowledge_type=None),
    item(knowledge_type=3),
    item(knowledge_type=["issue_pattern"]),
    item(knowledge_type="x" * 65),
    {"payload": issue_payload(), "confidence": 0.5},
    item(payload="text"),
    item(payload=None),
    item(payload=[]),
    item(payload={"rule": "x"}),
    item(payload=issue_payload(severity="huge")),
    item(payload=issue_payload(location="a\x00b")),
    item(payload={**issue_payload(), "k\x00": 1}),
    item(confidence=1.5),
    item(confidence=-0.1),
    item(confidence=float("nan")),
    item(confidence=float("inf")),
    item(confidence="high"),
    item(confidence=None),
    item(confidence=10**400),
    item(confidence=[0.5]),
    {"knowledge_type": "issue_pattern", "payload": issue_payload()},
    item(urgency="asap"),
    item(urgency="Normal"),
    item(urgency=None),
    item(urgency=2),
    item(urgency=""),
    item(targets="think"),
    item(targets=["nobody"]),
    item(targets=["think", "nobody"]),
    item(targets=[""]),
    item(targets=[None]),
    item(targets=["x" * 65]),
    item(targets=[f"w{i}" for i in range(101)]),
    item(targets=None),
    item(observed_at="yesterday"),
    item(observed_at=(timezone.now() + timedelta(minutes=10)).isoformat()),
    item(observed_at=3),
    item(idempotency_key=""),
    item(idempotency_key="   "),
    item(idempotency_key="a\x00"),
    item(idempotency_key="k" * 101),
    item(idempotency_key={"a": 1}),
    item(source=""),
    item(source=None),
    item(source="x" * 65),
    item(knowledge_type="issue_pattern", payload=issue_payload(), confidence=2, urgency="x"),
    [item()],
    "an item",
    None,
]


def drf(serializer_class, raw):
    """(validated data, None) or (None, errors) from the serializer itself."""
    try:
        return serializer_class().run_validation(raw), None
    except ValidationError as exc:
        return None, _flatten(exc.detail)


def check_agrees(serializer_class, raw, *, plain: bool | None = None):
    lean = LeanValidator(serializer_class())(raw)
    expected, errors = drf(serializer_class, raw)
    if errors is not None:
        assert lean is None, (raw, errors)
        return errors
    if plain:
        assert lean is not None, raw  # the shortcut recognised it
    assert lean is None or lean == expected, raw
    return None


@pytest.mark.parametrize("raw", PLAIN)
def test_plain_valid_items_are_recognised_with_drfs_result(raw, think):
    assert check_agrees(BroadcastSerializer, raw, plain=True) is None


@pytest.mark.parametrize("raw", OTHER_VALID)
def test_other_valid_items_get_drfs_result(raw, think):
    assert check_agrees(BroadcastSerializer, raw) is None


@pytest.mark.parametrize("raw", INVALID)
def test_invalid_items_are_never_accepted(raw, think):
    assert check_agrees(BroadcastSerializer, raw) is not None


ENVELOPES_PLAIN = [
    {"items": [item()]},
    {"items": [item(), item()], "lean": True, "source": "analysis"},
    {"items": [{}], "lean": False},
]
ENVELOPES_OTHER = [
    {"items": [item()], "lean": "true"},
    {"items": [item()], "lean": 1},
    {"items": [item()], "source": " analysis"},
    {"items": ({"a": 1},)},
]
ENVELOPES_INVALID = [
    {"items": []},
    {"nope": 1},
    {"items": {"a": 1}},
    {"items": "x"},
    {"items": [item(), "x"]},
    {"items": [None]},
    {"items": [[1]]},
    {"items": None},
    {"items": [item()], "lean": "maybe"},
    {"items": [item()], "lean": None},
    {"items": [item()], "source": ""},
    {"items": [item()] * 1001},
    [],
    None,
    "items",
]


@pytest.mark.parametrize("raw", ENVELOPES_PLAIN)
def test_plain_envelopes_are_recognised(raw):
    assert check_agrees(BulkBroadcastSerializer, raw, plain=True) is None


@pytest.mark.parametrize("raw", ENVELOPES_OTHER)
def test_other_valid_envelopes_get_drfs_result(raw):
    assert check_agrees(BulkBroadcastSerializer, raw) is None


@pytest.mark.parametrize("raw", ENVELOPES_INVALID)
def test_invalid_envelopes_are_never_accepted(raw, settings):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "max_bulk_items": 1000}
    assert check_agrees(BulkBroadcastSerializer, raw) is not None


odd = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.integers(),
    st.floats(),
    st.text(max_size=6),
    st.text(alphabet=" \t\x00aé", max_size=4),
    st.sampled_from(["\ud800", "a\ud800", "é" * 65]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
items = st.fixed_dictionaries(
    {},
    optional={
        "knowledge_type": st.sampled_from(["issue_pattern", "risk_pattern", " risk_pattern"]) | odd,
        "payload": st.sampled_from([issue_payload(), risk_payload(), {"rule": "x"}]) | odd,
        "confidence": st.floats(-0.5, 1.5) | st.sampled_from([0, 1, "0.5", True]) | odd,
        "urgency": st.sampled_from(["low", "normal", "high", "critical", "NORMAL"]) | odd,
        "targets": st.lists(st.sampled_from(["think", "nobody", " think", "", "x" * 65])) | odd,
        "observed_at": st.sampled_from([PAST, "2020-01-01", "nope"]) | odd,
        "idempotency_key": st.text(max_size=5) | st.just("k" * 101) | odd,
        "source": st.sampled_from(["analysis", "think", ""]) | odd,
    },
)


@given(raw=items)
@hsettings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_lean_and_drf_agree_on_any_item(raw, think):
    check_agrees(BroadcastSerializer, raw)


@given(
    raw=st.fixed_dictionaries(
        {},
        optional={
            "items": st.lists(st.sampled_from([item(), {}]) | odd, max_size=3) | odd,
            "lean": odd,
            "source": st.sampled_from(["analysis"]) | odd,
        },
    )
)
@hsettings(max_examples=200, deadline=None)
def test_lean_and_drf_agree_on_any_envelope(raw):
    check_agrees(BulkBroadcastSerializer, raw)


# --- Through the API: a single broadcast (DRF) and a bulk item (lean) answer the same errors


def sendable(raw) -> bool:
    """JSON a client can send (no NaN, no integer beyond 64 bits)."""
    try:
        json.dumps(raw, allow_nan=False)
    except ValueError:
        return False
    return raw.get("confidence") != 10**400


# source: a single broadcast refuses another source as the request's (403), a bulk per item
SAME_ERRORS = [
    raw for raw in INVALID if isinstance(raw, dict) and "source" not in raw and sendable(raw)
]


@pytest.mark.parametrize("raw", SAME_ERRORS)
def test_a_bad_item_gets_the_same_errors_alone_and_in_a_bulk(raw, analysis, think):
    alone = analysis.client.post("/api/knowledge/broadcast", raw, format="json")
    assert alone.status_code == 400, alone.content
    bulk = analysis.client.post(
        "/api/knowledge/broadcast/bulk", {"items": [raw, item()]}, format="json"
    )
    assert bulk.status_code == 200, bulk.content
    first, second = bulk.json()["results"]
    assert first == {"index": 0, "status": 400, "errors": alone.json()["errors"]}
    assert second["status"] == 201
    assert KnowledgeItem.objects.count() == Event.objects.count() == 1


def test_a_bad_envelope_gets_drfs_errors(analysis, settings):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "max_bulk_items": 2}
    for body, errors in [
        ({"items": [item()] * 3}, {"items": ["at most 2 items per request"]}),
        ({"items": []}, {"items": ["This list may not be empty."]}),
        (
            {"items": [item(), 1]},
            {"items.1": ['Expected a dictionary of items but got type "int".']},
        ),
        ({"items": [item()], "lean": "maybe"}, {"lean": ["Must be a valid boolean."]}),
    ]:
        r = analysis.client.post("/api/knowledge/broadcast/bulk", body, format="json")
        assert r.status_code == 400 and r.json()["errors"] == errors, r.json()
    assert not KnowledgeItem.objects.exists()
