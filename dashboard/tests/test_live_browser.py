"""Headless Chromium on /dashboard/live/: an event arrives, and the page survives a server
restart (kill -9, start again on the same port) without losing or repeating an event."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.test import Client

from dashboard.tests.conftest import CHROMIUM_ARGS
from knowledge.events import publish_event
from knowledge.tests.daphne_server import DaphneServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def publish(subject: str) -> int:
    item = {"knowledge_type": "risk_pattern", "source": "analysis", "subject": subject}
    with transaction.atomic():
        return publish_event(
            "knowledge_broadcast", {"item": item}, knowledge_type="risk_pattern", source="analysis"
        ).seq


@pytest.fixture
def daphne():
    srv = DaphneServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def page(django_user_model, daphne):
    from playwright.sync_api import sync_playwright

    user = django_user_model.objects.create_user("alice", "a@x.org", "pw-alice-123", is_staff=True)
    c = Client()
    c.force_login(user)
    session = c.cookies["sessionid"].value
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.add_cookies(
            [{"name": "sessionid", "value": session, "domain": "127.0.0.1", "path": "/"}]
        )
        pg = context.new_page()
        yield pg
        browser.close()


def rows(page) -> list[int]:
    return [
        int(s)
        for s in page.eval_on_selector_all(
            "#feed tr[data-seq]", "els => els.map(e => e.dataset.seq)"
        )
    ]


def test_live_page_shows_events_and_survives_a_server_restart(page, daphne):
    before = publish("already on the page")  # before the render: not replayed
    page.goto(f"{daphne.url}/dashboard/live/")
    badge = page.locator("#feed-status")
    page.wait_for_function(
        "document.getElementById('feed-status').dataset.status === 'live'", timeout=15000
    )

    first = publish("db migration without backfill")
    page.wait_for_selector(f"#feed tr[data-seq='{first}']", timeout=10000)
    assert "db migration without backfill" in page.inner_text("#feed")

    daphne.kill()
    page.wait_for_function(
        "['reconnecting','polling'].includes(document.getElementById('feed-status').dataset.status)",
        timeout=15000,
    )
    during = publish("published while the server was down")
    daphne.start()
    after = publish("published after the restart")
    page.wait_for_selector(f"#feed tr[data-seq='{after}']", timeout=30000)
    assert rows(page) == [after, during, first]  # newest first, each once, nothing older
    assert before not in rows(page)
    assert badge.get_attribute("data-status") in ("live", "polling")
