"""The pages of issue 13 (items 1-3): trends on the overview, the flow page, the worker
comparison, and the worker's state in the admin (formatted, read-only)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
from django.conf import settings

from conftest import issue_payload
from dashboard import timeseries
from knowledge.actions import do_update_state

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 30, 10, 0, 20, tzinfo=UTC)


def test_overview_has_the_trend_charts_served_locally(staff_client):
    html = staff_client.get("/dashboard/").content.decode()
    assert 'id="trends"' in html and 'data-api="/api/knowledge/timeseries"' in html
    assert "/static/vendor/uplot/uPlot.iife.min.js" in html
    assert "/static/dashboard/charts.js" in html
    assert "http://" not in html.split("<main>")[0]  # nothing from another host in <head>
    # the copy under static/ is the version package.json pins (npm)
    root = Path(settings.BASE_DIR) / "static"
    pinned = json.loads((root / "js" / "package.json").read_text())
    version = pinned["devDependencies"]["uplot"]
    head = (root / "vendor" / "uplot" / "uPlot.iife.min.js").read_text()[:80]
    assert f"(v{version})" in head
    assert (root / "vendor" / "uplot" / "LICENSE").exists()


def test_flow_page_and_nav(staff_client, client):
    html = staff_client.get("/dashboard/flow/").content.decode()
    assert 'id="flow-svg"' in html and 'data-api="/api/knowledge/flow"' in html
    assert 'href="/dashboard/workers/"' in html  # the navigation
    assert client.get("/dashboard/flow/").status_code == 302


@pytest.mark.django_db(transaction=True)  # the series reads the event log
def test_worker_comparison_shows_reported_state_spool_and_series(staff_client, analysis, think):
    with time_machine.travel(T0, tick=False):
        analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
        analysis.broadcast("issue_pattern", issue_payload(location="b.py::f"))
        do_update_state(
            analysis.worker,
            {
                "status": "running",
                "stats": {
                    "cycles": 4,
                    "errors": 1,
                    "cycle_seconds": 2.0,
                    "last_cycle_seconds": 0.25,
                    "last_error": "SDKError: exchange did not answer",
                },
                "spool": {"depth": 7, "oldest_age_seconds": 42.4, "dead_letters": 2},
            },
        )
        timeseries.rollup(metrics_text="")
        r = staff_client.get("/dashboard/workers/?window=15m")
    assert r.status_code == 200
    html = r.content.decode()
    row = html.split('data-worker="analysis"')[1].split("</tr>")[0]
    assert ">running<" in row and ">4<" in row
    assert "0.50 s" in row  # mean cycle: 2.0 s over 4 cycles
    assert "0.25 s" in row and "exchange did not answer" in row
    assert "depth 7" in row and "oldest 42 s" in row and "2 dead letters" in row
    assert "issue_pattern 2" in row
    assert "2026-11-30 10:00:20 UTC" in row  # last seen, with its zone
    other = html.split('data-worker="think"')[1].split("</tr>")[0]
    assert "not reported" in other and ">unknown<" in other
    assert staff_client.get("/dashboard/workers/?window=soon").status_code == 400


def test_admin_shows_the_worker_state_formatted_and_read_only(staff_client, analysis):
    do_update_state(analysis.worker, {"status": "running", "stats": {"cycles": 3}})
    html = staff_client.get(f"/admin/identity/worker/{analysis.worker.pk}/change/").content.decode()
    assert 'name="state"' not in html  # no editable field
    assert '<pre class="worker-state">' in html and "&quot;cycles&quot;: 3" in html
