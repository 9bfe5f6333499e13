"""Issue 10, finding 7: no input reaches a 500. Each case used to answer an HTML 500 page;
now it is a 4xx in the JSON error shape ``{detail, errors}`` naming the field, and nothing is
written. Runs on both backends (the suite runs on SQLite and on PostgreSQL)."""

from __future__ import annotations

import base64
import json

import pytest
from django.urls import get_resolver
from rest_framework.test import APIRequestFactory

from conftest import issue_payload
from identity.models import Worker
from knowledge.models import Event, KnowledgeItem

pytestmark = pytest.mark.django_db

ISSUE = {"knowledge_type": "issue_pattern", "confidence": 0.5}


def nested(depth: int) -> str:
    """A JSON array nested ``depth`` levels (``[[...]]``)."""
    return "[" * depth + "]" * depth


def send(client, method: str, url: str, raw: str):
    client.raise_request_exception = False
    return client.generic(method, url, raw, content_type="application/json")


def error(response, status: int = 400) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"detail", "errors"}, body
    return body


# --- JSON nesting -----------------------------------------------------------------------


def test_state_nested_400_levels_is_a_400_naming_state(think):
    r = send(
        think.client, "PUT", "/api/knowledge/state/think", '{"state": {"a": ' + nested(400) + "}}"
    )
    body = error(r)
    assert any(k.startswith("state") for k in body["errors"]), body
    assert Worker.objects.get(name="think").state == {}


def test_payload_nested_900_levels_is_a_400_and_nothing_is_stored(think):
    raw = json.dumps({**ISSUE, "payload": {**issue_payload(), "x": "HOLE"}}).replace(
        '"HOLE"', nested(900)
    )
    r = send(think.client, "POST", "/api/knowledge/broadcast", raw)
    body = error(r)
    assert any(k.startswith("payload") for k in body["errors"]), body
    assert not KnowledgeItem.objects.exists() and not Event.objects.exists()


def test_body_nested_10000_levels_is_a_400_at_the_parser(think):
    r = send(think.client, "POST", "/api/knowledge/query", nested(10_000))
    assert "nested deeper" in error(r)["detail"]


def test_nesting_below_the_limit_is_stored(think):
    """The limit refuses only what is deeper: 395 levels in a state document are kept."""
    r = send(
        think.client, "PUT", "/api/knowledge/state/think", '{"state": {"a": ' + nested(395) + "}}"
    )
    assert r.status_code == 200, r.content[:300]
    raw = json.dumps({**ISSUE, "payload": {**issue_payload(), "x": "HOLE"}}).replace(
        '"HOLE"', nested(390)
    )
    r = send(think.client, "POST", "/api/knowledge/broadcast", raw)
    assert r.status_code == 201, r.content[:300]


def test_json_depth_limit_is_a_setting(think, settings):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "max_json_depth": 5}
    r = send(think.client, "PUT", "/api/knowledge/state/think", '{"state": {"a": [[[[1]]]]}}')
    assert error(r)["errors"] == {"state.a": ["is nested deeper than 5 levels"]}
    r = send(think.client, "PUT", "/api/knowledge/state/think", '{"state": {"a": [[1]]}}')
    assert r.status_code == 200


# --- Lone surrogates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url,method,raw,field",
    [
        (
            "/api/knowledge/broadcast",
            "POST",
            '{"knowledge_type":"issue_pattern","confidence":0.5,'
            '"payload":{"rule":"r\\ud800","location":"a","severity":"high"}}',
            "payload.rule",
        ),
        (
            "/api/knowledge/broadcast",
            "POST",
            '{"knowledge_type":"issue_pattern","confidence":0.5,'
            '"payload":{"rule":"r","location":"a","severity":"high","x\\udfff":1}}',
            "payload",
        ),
        ("/api/knowledge/state/think", "PUT", '{"state": {"a": ["x\\ud800"]}}', "state.a[0]"),
        (
            "/api/knowledge/broadcast/bulk",
            "POST",
            '{"items":[{"knowledge_type":"issue_pattern","confidence":0.5,'
            '"payload":{"rule":"r","location":"\\ud800","severity":"high"}}]}',
            "items[0].payload.location",
        ),
    ],
)
def test_lone_surrogate_in_a_stored_string_is_a_400_naming_the_field(
    think, url, method, raw, field
):
    body = error(send(think.client, method, url, raw))
    assert field in body["errors"], body
    assert "surrogate" in body["errors"][field][0]
    assert not KnowledgeItem.objects.exists()
    assert Worker.objects.get(name="think").state == {}


def test_a_valid_surrogate_pair_is_stored(think):
    raw = json.dumps({**ISSUE, "payload": issue_payload(location="smile \U0001f600")})
    assert "\\ud83d\\ude00" in raw  # json.dumps escapes it as a pair
    r = send(think.client, "POST", "/api/knowledge/broadcast", raw)
    assert r.status_code == 201, r.content
    assert r.json()["item"]["payload"]["location"] == "smile \U0001f600"


# --- Crafted query cursors --------------------------------------------------------------


def cursor(**data) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": cursor(k={"a": 1}, i=1, a=1.0)},
        {"cursor": cursor(k=[1], i=1, a=1.0), "sort": "confidence"},
        {"cursor": cursor(k=1, i=1, a=float("nan"))},
        {"cursor": cursor(k=1, i=1, a=1e300)},
        {"cursor": cursor(k=1, i=1, a=float("inf"))},
        {"cursor": cursor(k="text", i=1, a=1.0), "sort": "confidence"},
        {"cursor": cursor(k="text", i=1, a=1.0), "sort": "-urgency"},
        {"cursor": cursor(k="text", i=1, a=1.0), "sort": "created_at"},
        {"cursor": cursor(k="0001-01-01T00:00:00+14:00", i=1, a=1.0), "sort": "created_at"},
        {"cursor": cursor(k="2026-01-01T00:00:00", i=1, a=1.0), "sort": "observed_at"},
        {"cursor": cursor(k="x", i=1, a=1.0), "types": "issue_pattern"},
        {"cursor": cursor(k="x", i=1, a=1.0)},
        {"cursor": cursor(k=1e300, i=1, a=1.0), "sort": "urgency"},
        {"cursor": cursor(k=1, i=2**63, a=1.0)},
        {"cursor": cursor(k=1, i="1", a=1.0)},
        {"cursor": cursor(k=1, i=1, a="1")},
        {"cursor": base64.urlsafe_b64encode(b"[1,2,3]").decode()},
        {"cursor": "not base64 at all!"},
    ],
    ids=lambda p: json.dumps(p)[:60],
)
def test_crafted_cursor_is_a_400_naming_cursor(think, analysis, params):
    analysis.broadcast("issue_pattern", issue_payload())
    think.client.raise_request_exception = False
    body = error(think.client.get("/api/knowledge/query", params))
    assert "cursor" in body["errors"], body
    body = error(think.client.post("/api/knowledge/query", params, format="json"))
    assert "cursor" in body["errors"], body


def test_a_real_cursor_still_pages(think, analysis):
    for n in range(3):
        analysis.broadcast("issue_pattern", issue_payload(location=f"f{n}.py::f"))
    for sort in ("-freshness", "confidence", "created_at", "-observed_at", "urgency"):
        first = think.client.get("/api/knowledge/query", {"limit": 2, "sort": sort}).json()
        rest = think.client.get(
            "/api/knowledge/query", {"limit": 2, "sort": sort, "cursor": first["next"]}
        )
        assert rest.status_code == 200 and len(rest.json()["results"]) == 1, (sort, rest.content)


# --- Out-of-range numbers and times -----------------------------------------------------


def test_flag_with_ids_beyond_64_bits_is_a_400(think):
    body = error(
        send(
            think.client,
            "POST",
            "/api/knowledge/conflicts/flag",
            '{"items": [9223372036854775808, 9223372036854775809]}',
        )
    )
    assert "items" in next(iter(body["errors"])), body


@pytest.mark.parametrize(
    "url,raw",
    [
        ("/api/knowledge/validate", '{"item": 9223372036854775808, "verdict": "confirmed"}'),
        ("/api/knowledge/receive/think/ack", '{"seq": 9223372036854775808}'),
    ],
)
def test_other_ids_beyond_64_bits_are_a_400(think, url, raw):
    error(send(think.client, "POST", url, raw))


@pytest.mark.parametrize(
    "moment",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"],
)
def test_conflict_time_filter_out_of_range_is_a_400(think, moment):
    think.client.raise_request_exception = False
    body = error(think.client.get("/api/knowledge/conflicts", {"opened_after": moment}))
    assert "opened_after" in body["errors"], body


def test_events_since_beyond_64_bits_is_a_400(think):
    think.client.raise_request_exception = False
    error(think.client.get("/api/knowledge/events", {"since": 2**63}))


def test_path_ids_beyond_64_bits_are_a_json_404(think):
    think.client.raise_request_exception = False
    for url in (
        "/api/knowledge/conflicts/9223372036854775808",
        "/api/knowledge/items/9223372036854775808",
    ):
        error(think.client.get(url), 404)
    error(
        think.client.post(
            "/api/knowledge/conflicts/9223372036854775808/request-resolution", {}, format="json"
        ),
        404,
    )


# --- JSON error bodies for every status under /api/ -------------------------------------


def test_unknown_api_path_is_a_json_404(think, anon_client):
    assert "no API endpoint" in error(think.client.get("/api/knowledge/nope"), 404)["detail"]
    error(anon_client.get("/api/nothing/here"), 404)


def test_pages_outside_the_api_keep_html_404(staff_client):
    r = staff_client.get("/dashboard/no-such-page")
    assert r.status_code == 404 and r["Content-Type"].startswith("text/html")


def test_wrong_method_is_a_json_405(think):
    error(think.client.delete("/api/knowledge/types"), 405)
    error(think.client.put("/api/knowledge/broadcast", {}, format="json"), 405)


def test_server_error_under_api_is_json_and_elsewhere_html():
    """The 500 view itself (no endpoint is left that raises; this is what one would show)."""
    handler = get_resolver().resolve_error_handler(500)
    factory = APIRequestFactory()
    r = handler(factory.get("/api/knowledge/query"))
    assert r.status_code == 500 and r["Content-Type"] == "application/json"
    assert set(json.loads(r.content)) == {"detail", "errors"}
    assert handler(factory.get("/dashboard/"))["Content-Type"].startswith("text/html")


def test_bad_host_under_api_is_a_json_400(think):
    think.client.raise_request_exception = False
    error(think.client.get("/api/knowledge/types", HTTP_HOST="evil.example"), 400)


# --- URL length --------------------------------------------------------------------------


def test_url_over_the_limit_is_a_json_414(think):
    body = error(think.client.get("/api/knowledge/types", {"x": "a" * 9000}), 414)
    assert "limit is 8192" in body["detail"]
    assert think.client.get("/api/knowledge/types", {"x": "a" * 7000}).status_code == 200


def test_brackets_inside_strings_do_not_count_as_nesting(think, settings):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "max_json_depth": 5}
    raw = json.dumps({"state": {"note": "[[[[[[[[{{{{{{", 'q"[': ["]]]]"]}})
    r = send(think.client, "PUT", "/api/knowledge/state/think", raw)
    assert r.status_code == 200, r.content
    assert r.json()["state"]["note"] == "[[[[[[[[{{{{{{"


def test_too_deep_is_named_first_whatever_else_is_wrong(think, settings):
    """The parser parses first and measures the raw text only when something is wrong; the
    answer is the one measuring first gave: too deep wins over a lone surrogate or broken
    syntax, named by its dotted keys."""
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "max_json_depth": 5}
    deep = '{"state": {"a": "\\ud800", "b": {"c": [[[[1]]]]}}}'
    r = send(think.client, "PUT", "/api/knowledge/state/think", deep)
    assert error(r)["errors"] == {"state.b.c": ["is nested deeper than 5 levels"]}
    r = send(think.client, "PUT", "/api/knowledge/state/think", deep[:-1])  # and broken
    assert error(r)["errors"] == {"state.b.c": ["is nested deeper than 5 levels"]}
    r = send(think.client, "PUT", "/api/knowledge/state/think", '{"state": {"a": "\\ud800"}}')
    assert "surrogate" in error(r)["errors"]["state.a"][0]
    r = send(think.client, "PUT", "/api/knowledge/state/think", '{"state": {"a": [[1]]}')
    assert "JSON parse error" in error(r)["detail"]
