"""Headless Chromium on the trend charts, the knowledge-flow picture and the worker comparison,
served by a real daphne: broadcasts and inbox reads, the checker's rollup (reading the web
process's /metrics over HTTP), then the pages: data points drawn, nodes and edges, no console
error, a new broadcast reaching the open page. Screenshots go to $KX_SCREENSHOT_DIR (or a temp
directory)."""

from __future__ import annotations

import urllib.request

import pytest
from django.test import Client

from conftest import Persona, issue_payload, risk_payload
from dashboard import timeseries
from dashboard.tests.conftest import CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


# Pixels of the chart's first line colour (#2f6fdb) in the upper 70 % of the plot: a line that
# rises above zero. An all-zero series is a flat line along the bottom and counts none.
RAISED_PIXELS_JS = """(id) => {
  const canvas = document.querySelector('#' + id + ' canvas');
  const ctx = canvas.getContext('2d');
  const h = Math.floor(canvas.height * 0.7);
  const data = ctx.getImageData(0, 0, canvas.width, h).data;
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 0 && Math.abs(data[i] - 47) < 40 && Math.abs(data[i + 1] - 111) < 40
        && Math.abs(data[i + 2] - 219) < 40) n += 1;
  }
  return n;
}"""


@pytest.fixture
def browser_page(django_user_model, daphne):
    from playwright.sync_api import sync_playwright

    user = django_user_model.objects.create_user("alice", "a@x.org", "pw-alice-123", is_staff=True)
    c = Client()
    c.force_login(user)
    session = c.cookies["sessionid"].value
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        context.add_cookies(
            [{"name": "sessionid", "value": session, "domain": "127.0.0.1", "path": "/"}]
        )
        pg = context.new_page()
        pg.console_errors = []
        pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
        pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
        yield pg
        browser.close()


def http_get(url: str, token: str) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status


def roll_up(daphne) -> timeseries.RollupResult:
    """What the checker does: read the web process's /metrics, roll up."""
    text = timeseries.fetch_metrics(f"{daphne.url}/metrics")
    assert text is not None
    return timeseries.rollup(metrics_text=text)


def test_charts_flow_and_workers_pages_show_the_fleet(browser_page, daphne, shots):
    page = browser_page
    analysis, think, dream = Persona("analysis"), Persona("think"), Persona("dream")
    for i in range(4):
        assert (
            analysis.broadcast("issue_pattern", issue_payload(location=f"m{i}.py::f")).status_code
            == 201
        )
    think.broadcast("risk_pattern", risk_payload())
    think.client.get("/api/knowledge/receive/think")
    dream.client.get("/api/knowledge/receive/dream")
    roll_up(daphne)  # counts, and the latency baseline
    for _ in range(5):
        assert http_get(f"{daphne.url}/api/knowledge/types", think.token) == 200
    assert roll_up(daphne).scraped

    # Overview: every chart drawn, the broadcasts and latency charts with data points
    page.goto(f"{daphne.url}/dashboard/")
    page.wait_for_function("Number(document.getElementById('trends').dataset.updated) >= 1")
    for chart in (
        "broadcasts",
        "receptions",
        "conflicts",
        "api_latency",
        "api_requests",
        "live_connections",
        "freshness",
    ):
        assert page.locator(f"#chart-{chart} canvas").count() == 1, chart
    assert page.get_attribute("#chart-broadcasts", "data-total") == "5"
    assert int(page.get_attribute("#chart-receptions", "data-total")) >= 6
    assert int(page.get_attribute("#chart-api_latency", "data-points")) >= 3
    assert int(page.get_attribute("#chart-api_requests", "data-total")) >= 5
    assert int(page.get_attribute("#chart-freshness", "data-points")) >= 2
    assert page.evaluate(RAISED_PIXELS_JS, "chart-broadcasts") > 20
    page.screenshot(path=str(shots / "overview.png"), full_page=True)
    page.locator("#trends").screenshot(path=str(shots / "trends.png"))

    # Live: a new broadcast, the checker's next pass, and the open page draws it
    analysis.broadcast("issue_pattern", issue_payload(location="late.py::f"))
    roll_up(daphne)
    page.wait_for_function(
        "document.getElementById('chart-broadcasts').dataset.total === '6'", timeout=20000
    )

    # Flow: three columns of nodes, bands between them
    page.goto(f"{daphne.url}/dashboard/flow/")
    page.wait_for_function("Number(document.getElementById('flow').dataset.updated) >= 1")
    names = page.eval_on_selector_all(
        "#flow-svg .node", "els => els.map(e => e.dataset.column + ':' + e.dataset.name)"
    )
    assert {
        "source:analysis",
        "source:think",
        "type:issue_pattern",
        "type:risk_pattern",
        "receiver:think",
        "receiver:dream",
    } <= set(names)
    links = page.eval_on_selector_all(
        "#flow-svg .link", "els => els.map(e => [e.dataset.from, e.dataset.to, e.dataset.count])"
    )
    assert ["analysis", "issue_pattern", "5"] in links
    assert ["issue_pattern", "dream", "4"] in links
    assert page.locator("#flow-table tbody tr").count() == len(links)
    page.screenshot(path=str(shots / "flow-page.png"), full_page=True)
    page.locator("#flow").screenshot(path=str(shots / "flow.png"))

    # Workers: one row each, counts from the series, the inbox lag
    page.goto(f"{daphne.url}/dashboard/workers/")
    row = page.locator("tr[data-worker='analysis']")
    assert "issue_pattern 5" in row.inner_text()
    assert "issue_pattern 4" in page.locator("tr[data-worker='dream']").inner_text()
    page.screenshot(path=str(shots / "workers-page.png"), full_page=True)
    page.locator("#workers").screenshot(path=str(shots / "workers.png"))

    # A phone: no sideways scrolling (the flow picture scrolls inside its card)
    page.set_viewport_size({"width": 390, "height": 844})
    for path, ready in [
        ("/dashboard/", "Number(document.getElementById('trends').dataset.updated) >= 1"),
        ("/dashboard/flow/", "Number(document.getElementById('flow').dataset.updated) >= 1"),
        ("/dashboard/workers/", "true"),
    ]:
        page.goto(f"{daphne.url}{path}")
        page.wait_for_function(ready)
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], (path, width)
    page.screenshot(path=str(shots / "phone-workers.png"))

    assert page.console_errors == []
