"""The finish of the pages: API root, favicon, error pages, one time format."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.template import Context, Template
from django.test import RequestFactory

pytestmark = pytest.mark.django_db


def test_the_api_root_lists_the_endpoints_browsable_and_json(client):
    body = client.get("/api/knowledge/", HTTP_ACCEPT="application/json").json()
    urls = {e["name"]: e["url"] for section in body["endpoints"].values() for e in section}
    assert urls["broadcast"] == "http://testserver/api/knowledge/broadcast"
    assert urls["conflict-list"] == "http://testserver/api/knowledge/conflicts"
    assert urls["item"] == "/api/knowledge/items/{pk}"
    assert urls["receive"] == "/api/knowledge/receive/{worker}"
    assert set(body["endpoints"]) == {
        "knowledge",
        "conflicts",
        "monitoring",
        "workers",
        "documentation",
    }
    assert urls["timeseries"] == "http://testserver/api/knowledge/timeseries"
    html = client.get("/api/knowledge/", HTTP_ACCEPT="text/html")
    assert html.status_code == 200 and "Api Root" in html.content.decode()


def test_the_favicon_is_a_static_file_linked_and_at_the_usual_path(client, staff_client):
    r = client.get("/favicon.ico")
    assert r.status_code == 302 and r["Location"] == "/static/favicon.svg"
    assert (
        'rel="icon" href="/static/favicon.svg"' in staff_client.get("/dashboard/").content.decode()
    )


def test_error_pages_are_styled_html_and_json_under_api(client):
    page = client.get("/no/such/page")
    assert page.status_code == 404 and "Page not found" in page.content.decode()
    assert "/static/css/dashboard.css" in page.content.decode()
    api = client.get("/api/knowledge/no-such-endpoint")
    assert api.status_code == 404 and api.json()["errors"] == {}
    from knowledge.api.errors import server_error

    html = server_error(RequestFactory().get("/dashboard/"))
    assert html.status_code == 500 and "Something went wrong" in html.content.decode()
    js = server_error(RequestFactory().get("/api/knowledge/query"))
    assert js.status_code == 500 and b'"detail"' in js.content


def test_one_time_format_with_the_zone():
    out = Template(
        "{% load kx_format %}{{ t|when }} {{ s|when }} {{ n|when }} {{ x|num }} {{ p|pct }}"
    )
    text = out.render(
        Context(
            {
                "t": datetime(2026, 12, 1, 9, 5, 3, tzinfo=UTC),
                "s": "2026-12-01T09:05:03+00:00",
                "n": None,
                "x": 0.0000000511853919804572,
                "p": 0.4251,
            }
        )
    )
    assert text.count(">2026-12-01 09:05:03 UTC</time>") == 2
    assert " - 0 42.5 %" in text
