"""A person resolves a conflict through the dashboard in headless Chromium."""

from __future__ import annotations

import socket

import pytest

from conflicts.models import Conflict, Resolution
from conftest import risk_payload
from knowledge.choices import ItemStatus
from knowledge.models import KnowledgeItem

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port(low: int = 8400, high: int = 8499) -> int:
    for port in range(low, high + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 8400-8499")


@pytest.fixture
def server(transactional_db):
    from pytest_django.live_server_helper import LiveServer

    live = LiveServer(f"127.0.0.1:{_free_port()}")
    live._live_server_modified_settings.enable()
    yield live
    live._live_server_modified_settings.disable()
    live.stop()


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_reviewer_picks_the_winner_in_the_dashboard(
    server, page, think, analysis, django_user_model
):
    django_user_model.objects.create_user(
        "rita", "rita@example.com", "pw-rita-12345", is_staff=True
    )
    high = think.broadcast("risk_pattern", risk_payload(level="high"), 0.8).json()["item"]["id"]
    body = analysis.broadcast("risk_pattern", risk_payload(level="low"), 0.8).json()
    cid, low = body["conflicts"][0], body["item"]["id"]

    page.goto(f"{server.url}/dashboard/conflicts/")
    page.fill("#id_username", "rita")
    page.fill("#id_password", "pw-rita-12345")
    page.click("input[type=submit]")
    page.wait_for_url(f"{server.url}/dashboard/conflicts/")
    row = page.locator(f'tr[data-conflict="{cid}"]')
    assert "Pending review" in row.inner_text()
    row.locator("a").first.click()

    page.wait_for_selector("#resolve-form")
    assert page.locator(f'tr[data-item="{high}"] td.claim').inner_text() == "high"
    page.check(f'input[name=winner_item][value="{high}"]')
    page.fill("input[name=note]", "the migration has no backfill")
    page.click("button[value=pick]")

    page.wait_for_selector(".msg.success")
    assert page.locator("#conflict-status").inner_text() == "Resolved"
    assert page.locator("#resolve-form").count() == 0
    assert page.locator(f'tr[data-item="{low}"]').get_attribute("class") == "lost"
    assert "the migration has no backfill" in page.locator("table.history").inner_text()

    conflict = Conflict.objects.get(pk=cid)
    assert conflict.decided_by == "user:rita" and conflict.decided_claim == "high"
    assert KnowledgeItem.objects.get(pk=low).status == ItemStatus.SUPERSEDED
    assert Resolution.objects.filter(conflict=conflict).count() == 1
