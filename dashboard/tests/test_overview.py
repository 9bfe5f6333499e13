"""The monitoring overview, alert rules and the check_alerts command."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from conftest import issue_payload
from dashboard import alerts
from knowledge.models import Event

pytestmark = pytest.mark.django_db


def by_name(name):
    return next(a for a in alerts.evaluate() if a.name == name)


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


def test_broadcast_rate_drop_fires_after_a_fall_of_more_than_half(analysis):
    now = timezone.now()
    with time_machine.travel(now - timedelta(minutes=20), tick=False):
        for i in range(30):
            analysis.broadcast("issue_pattern", issue_payload(location=f"m{i}.py::f"))
    with time_machine.travel(now, tick=False):
        for i in range(10):
            analysis.broadcast("issue_pattern", issue_payload(location=f"n{i}.py::f"))
        alert = by_name("broadcast_rate_drop")
        assert alert.firing and alert.value == pytest.approx(10 / 30)
        for i in range(10):
            analysis.broadcast("issue_pattern", issue_payload(location=f"o{i}.py::f"))
        assert not by_name("broadcast_rate_drop").firing  # 20 of 30 is not a drop over 50 %


def test_stale_knowledge_fires_when_a_type_has_nothing_fresh(recall):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        recall.broadcast(
            "context_enrichment", {"target": "a.py::f", "aspect": "churn", "value": "high"}
        )
        assert not by_name("stale_knowledge").firing
    with time_machine.travel(start + timedelta(hours=5), tick=False):  # 6 h decay: freshness 0.43
        alert = by_name("stale_knowledge")
        assert alert.firing and "context_enrichment" in alert.message


def test_api_latency_window():
    from dashboard import middleware

    middleware._recent.clear()
    assert middleware.recent_api_p95(300) == (0.0, 0)
    import time

    for ms in [5] * 90 + [300] * 10:
        middleware._recent.append((time.monotonic(), ms / 1000))
    p95, n = middleware.recent_api_p95(300)
    assert n == 100 and p95 == pytest.approx(0.3)
    assert by_name("api_latency").firing
    middleware._recent.clear()


def test_check_alerts_announces_changes_once(analysis):
    now = timezone.now()
    with time_machine.travel(now - timedelta(minutes=20), tick=False):
        for i in range(25):
            analysis.broadcast("issue_pattern", issue_payload(location=f"m{i}.py::f"))
    with time_machine.travel(now, tick=False):
        out = StringIO()
        call_command("check_alerts", stdout=out)
        assert "FIRING warning broadcast_rate_drop" in out.getvalue()
        fired = Event.objects.filter(kind="alert_fired")
        assert [e.data["name"] for e in fired] == ["broadcast_rate_drop"]
        assert fired[0].data["state"] == "firing"


def test_metrics_export_alert_states(client, db):
    text = client.get("/metrics").content.decode()
    assert 'kx_alert_firing{alert="database_latency",level="warning"} 0.0' in text


def test_unresolved_conflicts_alert_and_card(staff_client, analysis, think, learning, settings):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "auto_resolve_threshold": 1.01}
    for i in range(11):  # eleven contradictions, none confident enough to apply
        analysis.broadcast("issue_pattern", issue_payload(location=f"c{i}.py::f", severity="high"))
        think.broadcast("issue_pattern", issue_payload(location=f"c{i}.py::f", severity="low"))
    alert = by_name("unresolved_conflicts")
    assert alert.firing and alert.value == 11
    html = staff_client.get("/dashboard/").content.decode()
    assert 'id="stat-conflicts">11<' in html
