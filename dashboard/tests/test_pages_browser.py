"""Headless Chromium on the review flow, the alerts page and the finish of every page, served by
a real daphne: a decision needs a confirmation, the alerts page shows the checker's flips, no
console error on any page (the favicon included), no sideways scrolling at 390 px. Screenshots
go to $KX_SCREENSHOT_DIR (or a temp directory)."""

from __future__ import annotations

import pytest
from django.test import Client

from conflicts.models import Conflict
from conftest import Persona, risk_payload
from dashboard.actions import do_check_alerts, ensure_rules
from dashboard.models import AlertRule
from dashboard.tests.conftest import CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OVERFLOW_JS = "() => [document.scrollingElement.scrollWidth, window.innerWidth]"


@pytest.fixture
def browser(django_user_model, daphne, monkeypatch):
    """A logged-in staff browser; ``open(width)`` gives a page that records console errors
    and failed responses (a missing favicon would be one)."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test's own database calls
    # (fixtures, the checker's pass) are plain synchronous code all the same.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    user = django_user_model.objects.create_user(
        "rita", "r@x.org", "pw-rita-12345", is_staff=True, is_superuser=True
    )
    c = Client()
    c.force_login(user)
    session = c.cookies["sessionid"].value
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)

        def open_page(width: int = 1366, height: int = 900):
            context = chromium.new_context(viewport={"width": width, "height": height})
            context.add_cookies(
                [{"name": "sessionid", "value": session, "domain": "127.0.0.1", "path": "/"}]
            )
            pg = context.new_page()
            pg.errors = []
            pg.on("console", lambda m: m.type == "error" and pg.errors.append(m.text))
            pg.on("pageerror", lambda e: pg.errors.append(str(e)))
            pg.on(
                "response",
                lambda r: r.status >= 400 and pg.errors.append(f"{r.status} {r.url}"),
            )
            return pg

        yield open_page
        chromium.close()


def make_conflicts(n: int) -> list[int]:
    think, analysis = Persona("think"), Persona("analysis")
    ids = []
    for i in range(n):
        pattern = f"db migration {i} without backfill"
        assert (
            think.broadcast("risk_pattern", risk_payload(pattern, "high"), 0.8).status_code == 201
        )
        body = analysis.broadcast("risk_pattern", risk_payload(pattern, "low"), 0.8).json()
        ids.append(body["conflicts"][0])
    return ids


def test_reject_needs_a_confirmation_then_offers_the_next_in_queue(browser, daphne, shots):
    first, second = make_conflicts(2)
    page = browser()
    page.goto(f"{daphne.url}/dashboard/conflicts/{second}/")
    page.fill("input[name=note]", "both claims are wrong")
    page.click("button[value=reject]")
    page.wait_for_selector("#confirm-form")
    assert "cannot be undone" in page.inner_text("#consequence")
    page.screenshot(path=str(shots / "review-confirm.png"), full_page=True)
    assert Conflict.objects.get(pk=second).status == "pending_review"  # nothing decided yet

    page.click("#confirm-cancel")  # cancel changes nothing
    page.wait_for_selector("#resolve-form")
    assert Conflict.objects.get(pk=second).status == "pending_review"

    page.fill("input[name=note]", "both claims are wrong")
    page.click("button[value=reject]")
    page.wait_for_selector("#confirm-form")
    page.click("#confirm-yes")
    page.wait_for_selector(".msg.success")
    assert "every claim rejected" in page.inner_text(".msg.success")
    assert page.inner_text("#conflict-status") == "Rejected" or (
        Conflict.objects.get(pk=second).decision == "reject"
    )
    assert page.inner_text("#decided-by") == "rita"
    page.screenshot(path=str(shots / "review-decided.png"), full_page=True)
    page.click("#next-in-queue")
    page.wait_for_url(f"{daphne.url}/dashboard/conflicts/{first}/")
    assert page.errors == []


def test_the_alerts_page_shows_a_flip_after_the_checker_runs(browser, daphne, shots):
    ensure_rules()  # a transactional test starts from an empty table (no seeded rows)
    AlertRule.objects.filter(name="unresolved_conflicts").update(threshold=0)
    page = browser()
    page.goto(f"{daphne.url}/dashboard/alerts/")
    assert "No check has run yet" in page.inner_text("main")
    assert page.locator("tr.flip").count() == 0

    make_conflicts(1)
    do_check_alerts()  # one pass of the checker process
    page.reload()
    flips = page.locator('tr.flip[data-rule="unresolved_conflicts"]')
    assert [flips.nth(i).get_attribute("data-state") for i in range(flips.count())] == [
        "firing",
        "pending",
    ]
    row = page.locator("table.alerts tr.alert-unresolved_conflicts")
    assert "1 conflict open or pending review" in row.inner_text()
    assert (
        row.locator("a", has_text="review queue").get_attribute("href") == "/dashboard/conflicts/"
    )
    assert page.inner_text("#firing-count") == "1 firing"
    page.screenshot(path=str(shots / "alerts.png"), full_page=True)
    assert page.errors == []


def test_no_console_errors_and_no_sideways_scrolling_at_390_px(browser, daphne, shots):
    [cid] = make_conflicts(1)
    do_check_alerts()
    pages = {
        "overview": "/dashboard/",
        "conflicts": "/dashboard/conflicts/",
        "conflict": f"/dashboard/conflicts/{cid}/",
        "decisions": "/dashboard/conflicts/history/",
        "alerts": "/dashboard/alerts/",
    }
    wide = browser()
    for name, path in {
        **pages,
        "api-root": "/api/knowledge/",
        "admin-items": "/admin/knowledge/knowledgeitem/",
    }.items():
        wide.goto(f"{daphne.url}{path}")
        wide.wait_for_load_state("networkidle")
        assert wide.errors == [], (name, wide.errors)
        wide.screenshot(path=str(shots / f"wide-{name}.png"), full_page=True)
    icon = wide.request.get(f"{daphne.url}/favicon.ico")
    assert icon.ok and icon.headers["content-type"].startswith("image/svg")

    phone = browser(390, 844)
    for name, path in pages.items():
        phone.goto(f"{daphne.url}{path}")
        phone.wait_for_load_state("networkidle")
        scroll_width, inner_width = phone.evaluate(OVERFLOW_JS)
        phone.screenshot(path=str(shots / f"phone-{name}.png"))  # what a phone shows first
        assert scroll_width <= inner_width, (name, scroll_width, inner_width)
        assert phone.locator("#nav-conflicts").is_visible()
    assert phone.errors == []
