"""The monitoring overview (the alert rules: test_alerts.py)."""

from __future__ import annotations

import pytest

from conftest import issue_payload

pytestmark = pytest.mark.django_db


def test_overview_shows_numbers_health_alerts_and_workers(client, staff_client, analysis, think):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::f"))
    r = staff_client.get("/dashboard/")
    assert r.status_code == 200
    html = r.content.decode()
    assert 'id="stat-active">2<' in html
    assert 'id="health-status">ok<' in html
    for rule in ("broadcast_rate_drop", "api_latency", "database_latency", "stale_knowledge"):
        assert f"alert-{rule}" in html
    assert "analysis" in html and "think" in html
    assert 'href="/admin/knowledge/knowledgeitem/?knowledge_type=issue_pattern"' in html
    assert "width: 100%" in html  # the bar of the largest type
    assert client.get("/dashboard/").status_code == 302  # people log in first
