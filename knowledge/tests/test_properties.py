"""Property-based tests: whatever a client sends, broadcast and query answer 2xx or a 4xx
naming the problem, never a 500, and a rejected broadcast leaves nothing behind."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from knowledge.models import Event, KnowledgeItem
from knowledge.registry import registry

pytestmark = pytest.mark.django_db

# Text includes NUL and other control characters on purpose: PostgreSQL cannot store NUL.
texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=20) | st.sampled_from(
    ["\x00", "a\x00b"]
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=10,
)
type_names = st.sampled_from(registry.names() + ["", "nope", "risk pattern"])

payloads = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "rule": json_values,
            "location": json_values,
            "severity": st.sampled_from(["low", "high", "x", 3]),
        }
    ),
    st.fixed_dictionaries(
        {"pattern": texts, "risk_level": st.sampled_from(["low", "critical", "", None])}
    ),
)

broadcast_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"knowledge_type": type_names, "payload": payloads, "confidence": json_values},
        optional={
            "urgency": st.one_of(
                st.sampled_from(["low", "normal", "high", "critical"]), json_values
            ),
            "targets": st.one_of(st.lists(st.text(max_size=8), max_size=3), json_values),
            "observed_at": st.one_of(st.datetimes().map(lambda d: d.isoformat()), json_values),
            "idempotency_key": json_values,
            "source": json_values,
        },
    ),
)

PROPERTY_SETTINGS = hsettings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY_SETTINGS
@given(body=broadcast_bodies)
def test_broadcast_never_500_and_rejects_cleanly(analysis, body):
    before_items, before_events = KnowledgeItem.objects.count(), Event.objects.count()
    r = analysis.client.post("/api/knowledge/broadcast", body, format="json")
    assert r.status_code in (200, 201, 400, 403, 413, 422), (r.status_code, r.content[:300])
    if r.status_code >= 400:
        data = r.json()
        assert data["detail"]
        if r.status_code == 400:
            assert data["errors"], data
        assert KnowledgeItem.objects.count() == before_items
        assert Event.objects.count() == before_events
    else:
        assert "freshness" in r.json()["item"]


query_values = st.one_of(
    texts, st.integers(-5, 10**7).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str)
)
query_params = st.dictionaries(
    st.sampled_from(
        [
            "types",
            "sources",
            "urgency",
            "min_urgency",
            "min_freshness",
            "min_confidence",
            "max_confidence",
            "status",
            "validation_status",
            "created_after",
            "created_before",
            "target",
            "subject",
            "q",
            "sort",
            "limit",
            "cursor",
            "bogus",
        ]
    ),
    query_values,
    max_size=5,
)


@PROPERTY_SETTINGS
@given(params=query_params)
def test_get_query_never_500(think, params):
    r = think.client.get("/api/knowledge/query", params)
    assert r.status_code in (200, 400), (r.status_code, r.content[:300])
    if r.status_code == 400:
        assert r.json()["errors"]
    else:
        assert set(r.json()) >= {"results", "next"}


@PROPERTY_SETTINGS
@given(
    body=st.one_of(
        json_values,
        st.dictionaries(
            st.sampled_from(
                ["types", "urgency", "min_freshness", "limit", "sort", "status", "cursor", "q"]
            ),
            json_values,
            max_size=4,
        ),
    )
)
def test_post_query_never_500(think, body):
    r = think.client.post("/api/knowledge/query", body, format="json")
    assert r.status_code in (200, 400), (r.status_code, r.content[:300])
