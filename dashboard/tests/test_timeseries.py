"""Per-minute rollups (dashboard/timeseries.py), their API, and the checker's call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.db import transaction
from prometheus_client import generate_latest

from conflicts import actions as conflict_actions
from conftest import issue_payload, risk_payload
from dashboard import timeseries
from dashboard.choices import Series
from dashboard.metrics import REGISTRY
from dashboard.models import RollupPoint, RollupState
from identity.models import WorkerScope
from knowledge.actions import do_reset_event_log
from knowledge.choices import EventKind
from knowledge.events import publish_event
from knowledge.models import Event

# The rollup reads the event log up to its horizon: committed events only
# (docs/decisions/event-log-ordering.md, "The test-time rule").
pytestmark = pytest.mark.django_db(transaction=True)

# Mid-minute, so nothing a test does in "the same minute" straddles a boundary.
T0 = datetime(2026, 11, 30, 10, 0, 20, tzinfo=UTC)


def metrics_text() -> str:
    """This process's real /metrics text (the test client's requests went through the
    middleware here, as the web process's do)."""
    return generate_latest(REGISTRY).decode()


def points(series: str, **filters) -> dict:
    return {
        (p.knowledge_type, p.worker, p.peer): p.value
        for p in RollupPoint.objects.filter(series=series, **filters)
    }


@pytest.fixture
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def test_broadcasts_are_counted_by_minute_type_and_source_once(frozen, analysis, think):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::f"))
    think.broadcast("risk_pattern", risk_payload())

    first = timeseries.rollup(metrics_text="")
    again = timeseries.rollup(metrics_text="")  # nothing new: nothing counted twice

    assert first.events >= 3 and again.events == 0
    assert points(Series.BROADCASTS) == {
        ("issue_pattern", "analysis", ""): 2,
        ("risk_pattern", "think", ""): 1,
    }
    assert {p.minute for p in RollupPoint.objects.filter(series=Series.BROADCASTS)} == {
        T0.replace(second=0)
    }
    analysis.broadcast("issue_pattern", issue_payload(location="c.py::f"))
    timeseries.rollup(metrics_text="")
    assert points(Series.BROADCASTS)[("issue_pattern", "analysis", "")] == 3


def test_receptions_follow_the_inbox_deliveries(frozen, analysis, think, dream):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::f"))
    timeseries.rollup(metrics_text="")
    assert points(Series.RECEPTIONS) == {}  # nobody has read its inbox yet

    assert len(think.client.get("/api/knowledge/receive/think").json()["results"]) == 2
    timeseries.rollup(metrics_text="")
    assert points(Series.RECEPTIONS) == {("issue_pattern", "think", "analysis"): 2}

    think.client.get("/api/knowledge/receive/think")  # the same page again: no new delivery
    dream.client.get("/api/knowledge/receive/dream")
    timeseries.rollup(metrics_text="")
    assert points(Series.RECEPTIONS) == {
        ("issue_pattern", "think", "analysis"): 2,
        ("issue_pattern", "dream", "analysis"): 2,
    }


def test_conflicts_opened_auto_resolved_and_decided(frozen, think, analysis, staff_client):
    think.broadcast("risk_pattern", risk_payload(level="high"), 0.8)
    cid = analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.8).json()["conflicts"][0]
    conflict_actions.do_resolve(cid, "dismiss", user=staff_client.user)
    timeseries.rollup(metrics_text="")
    assert points(Series.CONFLICTS_OPENED) == {("risk_pattern", "", ""): 1}
    assert points(Series.CONFLICTS_DECIDED) == {("risk_pattern", "", ""): 1}
    assert points(Series.CONFLICTS_AUTO_RESOLVED) == {}
    with transaction.atomic():  # what the engine publishes when it applies a proposal
        publish_event(
            EventKind.KNOWLEDGE_RESOLVED,
            {"decision": "auto", "workers": []},
            knowledge_type="risk_pattern",
        )
    timeseries.rollup(metrics_text="")
    assert points(Series.CONFLICTS_AUTO_RESOLVED) == {("risk_pattern", "", ""): 1}


def test_freshness_by_type_is_the_mean_of_active_items(frozen, recall):
    recall.broadcast("context_enrichment", {"target": "a.py::f", "aspect": "churn", "value": "x"})
    frozen.shift(timedelta(hours=6))  # one decay time of context_enrichment
    timeseries.rollup(metrics_text="")
    row = RollupPoint.objects.get(series=Series.FRESHNESS, knowledge_type="context_enrichment")
    assert row.samples == 1 and row.value == pytest.approx(0.3679, abs=1e-3)


def test_latency_and_requests_come_from_the_web_process_histogram(frozen, staff_client, think):
    timeseries.rollup(metrics_text=metrics_text())  # the first reading is the baseline
    assert not RollupPoint.objects.filter(series=Series.API_REQUESTS).exists()
    for _ in range(5):
        assert think.client.get("/api/knowledge/types").status_code == 200
    frozen.shift(timedelta(seconds=15))
    timeseries.rollup(metrics_text=metrics_text())
    requests = RollupPoint.objects.get(series=Series.API_REQUESTS)
    assert requests.value == 5
    p95 = RollupPoint.objects.get(series=Series.API_LATENCY_P95).value
    p50 = RollupPoint.objects.get(series=Series.API_LATENCY_P50).value
    assert 0 < p50 <= p95
    # a second pass in the same minute adds its requests to the minute's
    think.client.get("/api/knowledge/types")
    timeseries.rollup(metrics_text=metrics_text())
    assert RollupPoint.objects.get(series=Series.API_REQUESTS).value == 6


def test_live_connections_gauge_from_the_metrics_text(frozen):
    timeseries.rollup(metrics_text="# TYPE kx_ws_connections gauge\nkx_ws_connections 3.0\n")
    assert RollupPoint.objects.get(series=Series.LIVE_CONNECTIONS).value == 3


def test_histogram_quantile_interpolates_inside_the_bucket():
    buckets = {"0.01": 50.0, "0.1": 90.0, "1.0": 100.0, "+Inf": 100.0}
    assert timeseries.histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert timeseries.histogram_quantile(0.95, buckets) == pytest.approx(0.55)
    assert timeseries.histogram_quantile(0.25, buckets) == pytest.approx(0.005)
    assert timeseries.histogram_quantile(0.5, {"+Inf": 0.0}) == 0.0
    # beyond the last finite bound: that bound (as Prometheus answers)
    assert timeseries.histogram_quantile(0.9, {"0.1": 1.0, "+Inf": 10.0}) == 0.1


def test_minutes_past_retention_are_pruned(frozen, analysis, settings):
    analysis.broadcast("issue_pattern", issue_payload())
    timeseries.rollup(metrics_text="")
    assert RollupPoint.objects.filter(series=Series.BROADCASTS).exists()
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "timeseries_retention_hours": 1}
    frozen.shift(timedelta(minutes=61))
    result = timeseries.rollup(metrics_text="")
    assert result.pruned >= 1
    assert not RollupPoint.objects.filter(series=Series.BROADCASTS).exists()


def test_a_new_epoch_counts_nothing_it_cannot_see(frozen, analysis):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    timeseries.rollup(metrics_text="")
    do_reset_event_log()
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::f"))
    timeseries.rollup(metrics_text="")  # resumes at the new top: the new event is skipped
    assert points(Series.BROADCASTS) == {("issue_pattern", "analysis", ""): 1}
    analysis.broadcast("issue_pattern", issue_payload(location="c.py::f"))
    timeseries.rollup(metrics_text="")  # from there on, counted as before
    assert points(Series.BROADCASTS) == {("issue_pattern", "analysis", ""): 2}
    assert RollupState.objects.get().last_seq == Event.objects.latest("seq").seq


def test_the_checker_rolls_up(frozen, analysis, settings):
    settings.KNOWLEDGE_EXCHANGE = {
        **settings.KNOWLEDGE_EXCHANGE,
        "timeseries_scrape_url": "http://127.0.0.1:9/metrics",  # nothing answers: no gauges
    }
    analysis.broadcast("issue_pattern", issue_payload())
    call_command("check_alerts", stdout=open("/dev/null", "w"))
    assert points(Series.BROADCASTS) == {("issue_pattern", "analysis", ""): 1}
    assert not RollupPoint.objects.filter(series=Series.LIVE_CONNECTIONS).exists()


# --- API -------------------------------------------------------------------------------------


def test_api_series_by_type_for_staff(frozen, staff_client, analysis, think):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    think.broadcast("risk_pattern", risk_payload())
    timeseries.rollup(metrics_text="")
    r = staff_client.get("/api/knowledge/timeseries?series=broadcasts,conflicts&window=15m&by=type")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["window_minutes"] == 15 and body["step_seconds"] == 60
    assert len(body["timestamps"]) == 15
    assert body["timestamps"][-1] == int(T0.replace(second=0).timestamp())
    lines = body["series"]["broadcasts"]["lines"]
    assert lines["issue_pattern"][-1] == 1 and lines["risk_pattern"][-1] == 1
    assert sum(lines["issue_pattern"][:-1]) == 0
    assert set(body["series"]["conflicts"]["lines"]) == {"opened", "auto_resolved", "decided"}
    by_worker = staff_client.get("/api/knowledge/timeseries?series=broadcasts&by=worker").json()
    assert set(by_worker["series"]["broadcasts"]["lines"]) == {"analysis", "think"}


def test_api_long_windows_are_merged_into_steps(frozen, staff_client, analysis):
    analysis.broadcast("issue_pattern", issue_payload())
    timeseries.rollup(metrics_text="")
    body = staff_client.get("/api/knowledge/timeseries?series=broadcasts&window=2d").json()
    assert body["step_seconds"] == 240 and len(body["timestamps"]) == 720
    assert sum(body["series"]["broadcasts"]["lines"]["total"]) == 1


@pytest.mark.parametrize(
    "query, field",
    [
        ("series=nope", "series"),
        ("series=broadcasts,bogus", "series"),
        ("window=10x", "window"),
        ("window=0m", "window"),
        ("window=30d", "window"),  # past the retention
        ("by=colour", "by"),
    ],
)
def test_api_bad_parameters_get_the_json_error_shape(staff_client, query, field):
    r = staff_client.get(f"/api/knowledge/timeseries?{query}")
    assert r.status_code == 400
    body = r.json()
    assert field in body["errors"] and field in body["detail"]


def test_api_auth_people_need_staff_workers_see_public_events_only(
    frozen, anon_client, django_user_model, analysis, think, dream
):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::f"), targets=["dream"])
    timeseries.rollup(metrics_text="")
    assert anon_client.get("/api/knowledge/timeseries").status_code in (401, 403)
    bob = django_user_model.objects.create_user("bob", "b@x.org", "pw-bob-123")
    anon_client.force_login(bob)
    assert anon_client.get("/api/knowledge/flow").status_code == 403

    seen = think.client.get("/api/knowledge/timeseries?series=broadcasts&window=5m").json()
    assert sum(seen["series"]["broadcasts"]["lines"]["total"]) == 1  # not the targeted one
    flow = think.client.get("/api/knowledge/flow?window=5m").json()
    assert flow["broadcasts"] == [{"source": "analysis", "type": "issue_pattern", "count": 1}]


def test_flow_links_sources_types_and_receivers(frozen, staff_client, analysis, think, dream):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    think.broadcast("risk_pattern", risk_payload())
    think.client.get("/api/knowledge/receive/think")
    dream.client.get("/api/knowledge/receive/dream")
    timeseries.rollup(metrics_text="")
    flow = staff_client.get("/api/knowledge/flow?window=15m").json()
    assert {s["name"] for s in flow["sources"]} == {"analysis", "think"}
    assert {t["name"] for t in flow["types"]} == {"issue_pattern", "risk_pattern"}
    assert {(r["source"], r["type"], r["receiver"], r["count"]) for r in flow["receptions"]} == {
        ("analysis", "issue_pattern", "think", 1),
        ("analysis", "issue_pattern", "dream", 1),
    }
    frozen.shift(timedelta(minutes=20))
    assert staff_client.get("/api/knowledge/flow?window=15m").json()["broadcasts"] == []


def test_api_worker_sees_only_the_types_its_read_scope_allows(frozen, analysis, think):
    analysis.broadcast("issue_pattern", issue_payload())
    analysis.broadcast("risk_pattern", risk_payload())
    timeseries.rollup(metrics_text="")
    WorkerScope.objects.create(worker=think.worker, read_types=["risk_pattern"])
    body = think.client.get("/api/knowledge/timeseries?series=broadcasts,freshness&by=type").json()
    assert set(body["series"]["broadcasts"]["lines"]) == {"risk_pattern"}
    assert set(body["series"]["freshness"]["lines"]) == {"risk_pattern"}
    flow = think.client.get("/api/knowledge/flow").json()
    assert [t["name"] for t in flow["types"]] == ["risk_pattern"]
