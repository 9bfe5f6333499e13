"""Alert rules: evaluated by the checker only, state and flips persisted, thresholds as data."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conftest import issue_payload
from dashboard import alerts, latency
from dashboard.actions import do_check_alerts
from dashboard.models import AlertFlip, AlertRule
from knowledge.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_latency():
    latency.reset()
    yield
    latency.reset()


def rule(name) -> AlertRule:
    return AlertRule.objects.get(name=name)


def states(name) -> list[tuple[str, str]]:
    return [
        (f.old_state, f.new_state) for f in AlertFlip.objects.filter(rule__name=name).order_by("id")
    ]


def test_the_migration_seeds_the_plans_thresholds_as_registered():
    from importlib import import_module

    seeded = import_module("dashboard.migrations.0003_seed_alert_rules").RULES
    assert seeded == {name: spec.defaults for name, spec in alerts.specs().items()}
    assert rule("api_latency").threshold == 100 and rule("database_latency").threshold == 50
    assert rule("unresolved_conflicts").threshold == 10
    assert rule("websocket_drop").level == "critical" and rule("websocket_drop").threshold == 0.8


def test_broadcast_rate_drop_goes_pending_then_firing_then_resolved(analysis):
    now = timezone.now()
    with time_machine.travel(now - timedelta(minutes=20), tick=False):
        for i in range(30):
            analysis.broadcast("issue_pattern", issue_payload(location=f"m{i}.py::f"))
    with time_machine.travel(now, tick=False):
        for i in range(10):
            analysis.broadcast("issue_pattern", issue_payload(location=f"n{i}.py::f"))
        do_check_alerts()
        r = rule("broadcast_rate_drop")
        assert r.state == "pending" and r.value == pytest.approx(10 / 30, abs=1e-3)
    with time_machine.travel(now + timedelta(seconds=61), tick=False):
        do_check_alerts()  # the breach lasted for_seconds (60)
        assert rule("broadcast_rate_drop").state == "firing"
        for i in range(10):
            analysis.broadcast("issue_pattern", issue_payload(location=f"o{i}.py::f"))
        do_check_alerts()  # 20 of 30 is not a drop over 50 %
    assert states("broadcast_rate_drop") == [
        ("ok", "pending"),
        ("pending", "firing"),
        ("firing", "resolved"),
    ]
    flip = AlertFlip.objects.filter(rule__name="broadcast_rate_drop", new_state="firing").get()
    assert flip.value == pytest.approx(10 / 30, abs=1e-3) and flip.threshold == 0.5
    events = Event.objects.filter(kind="alert_fired").order_by("seq")
    assert [(e.data["name"], e.data["state"]) for e in events] == [
        ("broadcast_rate_drop", "firing"),
        ("broadcast_rate_drop", "resolved"),
    ]


def test_a_breach_that_clears_while_pending_never_fires(analysis):
    now = timezone.now()
    with time_machine.travel(now - timedelta(minutes=20), tick=False):
        for i in range(30):
            analysis.broadcast("issue_pattern", issue_payload(location=f"m{i}.py::f"))
    with time_machine.travel(now, tick=False):
        do_check_alerts()
        assert rule("broadcast_rate_drop").state == "pending"
        for i in range(20):
            analysis.broadcast("issue_pattern", issue_payload(location=f"n{i}.py::f"))
        do_check_alerts()
    assert states("broadcast_rate_drop") == [("ok", "pending"), ("pending", "ok")]
    assert not Event.objects.filter(kind="alert_fired").exists()


def test_one_slow_request_after_a_restart_does_not_fire_the_latency_alert(client):
    with time_machine.travel(timezone.now(), tick=False):
        latency.record(0.4)  # one 400 ms request (schema generation, a cold cache...)
        latency.flush()
        do_check_alerts()
        r = rule("api_latency")
        assert r.state == "ok" and r.samples == 1
        assert "only 1 sample, 20 needed" in r.message


def test_api_latency_fires_on_enough_slow_requests_from_any_process():
    AlertRule.objects.filter(name="api_latency").update(for_seconds=0)
    with time_machine.travel(timezone.now(), tick=False):
        for ms in [5] * 70 + [300] * 30:
            latency.record(ms / 1000)
        latency.flush()  # what another process left in the shared counters
        p95, n = latency.window(300)
        assert n == 100 and 200 < p95 <= 300
        do_check_alerts()
    r = rule("api_latency")
    assert r.state == "firing" and r.samples == 100 and r.value > 100


def test_the_schema_and_its_viewer_are_not_timed_for_the_alert(client):
    client.get("/api/schema/")
    latency.flush()
    assert latency.window(300) == (None, 0)
    client.get("/api/knowledge/health")
    latency.flush()
    assert latency.window(300)[1] == 1


def test_thresholds_are_data_editable_without_code(analysis, think, settings):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "auto_resolve_threshold": 1.01}
    analysis.broadcast("issue_pattern", issue_payload(location="c.py::f", severity="high"))
    think.broadcast("issue_pattern", issue_payload(location="c.py::f", severity="low"))
    do_check_alerts()
    r = rule("unresolved_conflicts")
    assert r.state == "ok" and r.message == "1 conflict open or pending review"
    AlertRule.objects.filter(pk=r.pk).update(threshold=0)
    do_check_alerts()
    assert rule("unresolved_conflicts").state == "firing"  # for_seconds 0: at once


def test_pages_and_scrapes_read_stored_state_without_evaluating_or_writing(
    client, staff_client, analysis
):
    """A stored state no measurement here would give (an 80 ms database round trip, firing):
    pages and scrapes must show it as stored, and leave every rule as it was."""
    AlertRule.objects.filter(name="database_latency").update(
        state="firing", value=80, message="database round trip 80.0 ms", checked_at=timezone.now()
    )
    before = list(AlertRule.objects.order_by("pk").values())
    with CaptureQueriesContext(connection) as queries:
        html = staff_client.get("/dashboard/").content.decode()
        text = client.get("/metrics").content.decode()
        page = staff_client.get("/dashboard/alerts/").content.decode()
    writes = [q["sql"] for q in queries if q["sql"].split()[0] in ("INSERT", "UPDATE", "DELETE")]
    assert [w for w in writes if "dashboard_" in w or "knowledge_event" in w] == []
    assert 'kx_alert_firing{alert="database_latency",level="warning"} 1.0' in text
    assert 'kx_alert_state{alert="api_latency",state="ok"} 1.0' in text
    assert "database round trip 80.0 ms" in html and "1 firing" in html
    assert 'id="firing-count">1 firing<' in page
    assert list(AlertRule.objects.order_by("pk").values()) == before


def test_state_survives_a_restart_of_the_checker(settings, analysis, think):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "auto_resolve_threshold": 1.01}
    AlertRule.objects.filter(name="unresolved_conflicts").update(threshold=0)
    analysis.broadcast("issue_pattern", issue_payload(location="c.py::f", severity="high"))
    think.broadcast("issue_pattern", issue_payload(location="c.py::f", severity="low"))
    out = StringIO()
    call_command("check_alerts", stdout=out)
    assert "FIRING warning unresolved_conflicts: 1 conflict open" in out.getvalue()
    again = StringIO()
    call_command("check_alerts", stdout=again)  # a new process: the state is in the database
    assert "unresolved_conflicts" not in again.getvalue()
    assert Event.objects.filter(kind="alert_fired").count() == 1


def test_the_alerts_page_shows_state_history_and_the_queue_link(
    staff_client, settings, analysis, think
):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "auto_resolve_threshold": 1.01}
    AlertRule.objects.filter(name="unresolved_conflicts").update(threshold=0)
    analysis.broadcast("issue_pattern", issue_payload(location="c.py::f", severity="high"))
    think.broadcast("issue_pattern", issue_payload(location="c.py::f", severity="low"))
    do_check_alerts()
    html = staff_client.get("/dashboard/alerts/").content.decode()
    assert 'href="/dashboard/conflicts/">review queue</a>' in html
    assert 'data-rule="unresolved_conflicts" data-state="firing"' in html
    assert 'data-rule="unresolved_conflicts" data-state="pending"' in html
    assert " UTC</time>" in html
    only = staff_client.get("/dashboard/alerts/?rule=database_latency").content.decode()
    assert 'data-rule="unresolved_conflicts"' not in only


def test_a_disabled_rule_is_resolved_and_not_exported(client, settings, analysis, think):
    AlertRule.objects.filter(name="unresolved_conflicts").update(state="firing")
    AlertRule.objects.filter(name="unresolved_conflicts").update(enabled=False)
    do_check_alerts()
    assert rule("unresolved_conflicts").state == "resolved"
    assert 'alert="unresolved_conflicts"' not in client.get("/metrics").content.decode()


@pytest.mark.django_db(transaction=True)  # reads inboxes: committed events only
def test_broadcast_and_inbox_counters_count_at_the_source(
    client, analysis, think, django_capture_on_commit_callbacks
):
    def value(text, prefix):
        line = next((x for x in text.splitlines() if x.startswith(prefix)), None)
        return float(line.rsplit(" ", 1)[1]) if line else 0.0

    label = 'kx_broadcasts_total{knowledge_type="issue_pattern",outcome="created"}'
    received = 'kx_inbox_delivered_total{worker="think"}'
    before = client.get("/metrics").content.decode()
    with django_capture_on_commit_callbacks(execute=True):  # counted after commit
        analysis.broadcast("issue_pattern", issue_payload(location="count.py::f"))
        assert think.client.get("/api/knowledge/receive/think").status_code == 200
    after = client.get("/metrics").content.decode()
    assert value(after, label) == value(before, label) + 1
    assert value(after, received) == value(before, received) + 1


def test_the_admin_edits_thresholds_and_never_the_checkers_state(staff_client):
    rule_row = rule("api_latency")
    AlertRule.objects.filter(pk=rule_row.pk).update(state="firing", message="checker's")
    form = {
        "description": rule_row.description,
        "level": "critical",
        "threshold": "250",
        "unit": "ms",
        "min_samples": "50",
        "for_seconds": "120",
        "enabled": "on",
    }
    r = staff_client.post(f"/admin/dashboard/alertrule/{rule_row.pk}/change/", form)
    assert r.status_code == 302, r.content.decode()[:2000]
    after = rule("api_latency")
    assert (after.threshold, after.min_samples, after.for_seconds, after.level) == (
        250,
        50,
        120,
        "critical",
    )
    assert after.state == "firing" and after.message == "checker's"  # left as the checker wrote
    do_check_alerts()
    flip = AlertFlip.objects.filter(rule__name="api_latency").first()
    assert flip is not None and flip.threshold == 250  # the next pass uses the new threshold
    page = staff_client.get(f"/admin/dashboard/alertflip/{flip.pk}/change/").content.decode()
    assert 'name="_save"' not in page
