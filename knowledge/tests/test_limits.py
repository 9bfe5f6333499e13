"""Issue 10, finding 4: rate limits per token, per scope and per address (429 + Retry-After
in the JSON error shape), long polls in flight per token, failed admin logins, and a cheap,
optionally private /metrics. The suite's defaults are far above these; each test sets a low
limit through the settings, which is how an operator sets one (KE_* variables)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from conftest import Persona, issue_payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def limits(settings):
    def set_limits(**values):
        settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, **values}

    return set_limits


@pytest.fixture
def one_window():
    """Hold the clock inside one rate window. The limits count in fixed windows (a minute for
    "N/min"), so a test whose requests straddle a minute boundary would start a fresh count
    half-way through and see no 429 (CI once did). The clock stops one second into the next
    minute, so every request of the test falls into the same window."""
    start = (int(time.time() // 60) + 1) * 60 + 1
    with time_machine.travel(start, tick=False):
        yield


def assert_throttled(response, mentions: str) -> int:
    assert response.status_code == 429, (response.status_code, response.content[:300])
    body = response.json()
    assert set(body) == {"detail", "errors"} and mentions in body["detail"], body
    wait = int(response["Retry-After"])
    assert 1 <= wait <= 60
    return wait


def test_every_limit_has_a_default(settings):
    """The product defaults hold every limit (a merge that drops a key would silently switch
    the limit off)."""
    ke = settings.KNOWLEDGE_EXCHANGE
    for key in (
        "throttle_rate_address",
        "throttle_rate_client",
        "throttle_rate_broadcast",
        "throttle_rate_query",
    ):
        assert ke[key].split("/")[0].isdigit(), key
    assert ke["throttle_enabled"] is True and ke["long_polls_per_token"] > 0
    assert ke["login_max_failures"] > 0 and ke["login_lockout_seconds"] > 0
    assert ke["max_json_depth"] == 400 and ke["max_url_bytes"] == 8192
    assert ke["metrics_cache_seconds"] > 0 and ke["metrics_token"] == ""


def test_token_rate_limit_answers_429_with_retry_after(think, analysis, limits, one_window):
    limits(throttle_rate_client="5/min")
    for _ in range(5):
        assert think.client.get("/api/knowledge/types").status_code == 200
    assert_throttled(think.client.get("/api/knowledge/types"), "per token")
    # Another token has its own budget.
    assert analysis.client.get("/api/knowledge/types").status_code == 200


def test_the_limit_lifts_when_the_window_ends(think, limits):
    limits(throttle_rate_client="2/min")
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        think.client.get("/api/knowledge/types")
        think.client.get("/api/knowledge/types")
        wait = assert_throttled(think.client.get("/api/knowledge/types"), "per token")
    with time_machine.travel(start + timedelta(seconds=wait + 1), tick=False):
        assert think.client.get("/api/knowledge/types").status_code == 200


def test_broadcast_scope_is_limited_apart_from_queries(think, limits, one_window):
    limits(throttle_rate_broadcast="3/min")
    for n in range(3):
        assert (
            think.broadcast("risk_pattern", {"pattern": f"p{n}", "risk_level": "high"}).status_code
            == 201
        )
    r = think.broadcast("risk_pattern", {"pattern": "p4", "risk_level": "high"})
    assert_throttled(r, "'broadcast'")
    r = think.client.post(
        "/api/knowledge/broadcast/bulk",
        {
            "items": [
                {
                    "knowledge_type": "risk_pattern",
                    "confidence": 0.5,
                    "payload": {"pattern": "p5", "risk_level": "low"},
                }
            ]
        },
        format="json",
    )
    assert_throttled(r, "'broadcast'")
    assert think.client.get("/api/knowledge/query").status_code == 200


def test_query_scope_is_limited(think, limits, one_window):
    limits(throttle_rate_query="2/min")
    assert think.client.get("/api/knowledge/query").status_code == 200
    assert think.client.post("/api/knowledge/query", {}, format="json").status_code == 200
    assert_throttled(think.client.get("/api/knowledge/query"), "'query'")
    assert think.client.get("/api/knowledge/types").status_code == 200


def test_address_limit_counts_requests_with_bad_tokens_and_ignores_spoofed_forwarding(
    db, limits, one_window
):
    limits(throttle_rate_address="4/min")
    intruder = APIClient(REMOTE_ADDR="203.0.113.9")
    for n in range(4):
        r = intruder.get(
            "/api/knowledge/types",
            HTTP_AUTHORIZATION=f"Token guess-{n}",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}",
        )
        assert r.status_code == 401
    r = intruder.get(
        "/api/knowledge/types",
        HTTP_AUTHORIZATION="Token guess-5",
        HTTP_X_FORWARDED_FOR="198.51.100.99",
    )
    assert_throttled(r, "per client address")
    neighbour = APIClient(REMOTE_ADDR="203.0.113.10")
    assert neighbour.get("/api/knowledge/health").status_code in (200, 503)


def test_trusted_proxy_forwarded_address_is_the_client(db, limits, settings, one_window):
    limits(throttle_rate_address="1/min")
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = APIClient(REMOTE_ADDR="10.0.0.1")
    assert proxy.get("/api/knowledge/health", HTTP_X_FORWARDED_FOR="203.0.113.1").status_code != 429
    assert proxy.get("/api/knowledge/health", HTTP_X_FORWARDED_FOR="203.0.113.2").status_code != 429
    assert_throttled(
        proxy.get("/api/knowledge/health", HTTP_X_FORWARDED_FOR="203.0.113.1"), "address"
    )


def test_throttling_can_be_switched_off(think, limits):
    limits(throttle_rate_client="1/min", throttle_enabled=False)
    for _ in range(3):
        assert think.client.get("/api/knowledge/types").status_code == 200


# --- Long polls in flight --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_long_polls_in_flight_are_capped_per_token(limits):
    limits(long_polls_per_token=1)
    think, analysis = Persona("think"), Persona("analysis")
    first: dict = {}

    def long_poll():
        first["response"] = think.client.get("/api/knowledge/events", {"wait": 3})

    poller = threading.Thread(target=long_poll)
    poller.start()
    deadline = time.monotonic() + 10
    while not cache.get(f"kx:longpoll:w{think.worker.pk}:0") and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        assert_throttled(
            think.client.get("/api/knowledge/events", {"wait": 1}), "long polls in flight"
        )
        # A plain read is not a long poll, and another token has its own slots.
        assert think.client.get("/api/knowledge/events").status_code == 200
        assert analysis.client.get("/api/knowledge/events", {"wait": 0.1}).status_code == 200
    finally:
        poller.join(15)
    assert first["response"].status_code == 200
    # The slot is given back when the poll ends.
    assert think.client.get("/api/knowledge/events", {"wait": 0.1}).status_code == 200


# --- Admin login -------------------------------------------------------------------------


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(
        "bob", "bob@example.com", "bob-secret-42", is_staff=True
    )


def admin_login(client, password: str):
    return client.post("/admin/login/?next=/admin/", {"username": "bob", "password": password})


def test_admin_login_locks_out_after_repeated_failures(bob, limits, client):
    limits(login_max_failures=3, login_lockout_seconds=600)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(3):
            r = admin_login(client, "wrong")
            assert r.status_code == 200 and b"Please enter the correct username" in r.content
        r = admin_login(client, "bob-secret-42")  # the right password, but locked
        assert r.status_code == 200 and b"Too many failed login attempts" in r.content
        assert "_auth_user_id" not in client.session
        # The lockout is per name and address: bob from elsewhere is not locked out.
        elsewhere = type(client)(REMOTE_ADDR="198.51.100.7")
        assert admin_login(elsewhere, "bob-secret-42").status_code == 302
    if hasattr(cache, "ttl"):  # Redis expires keys in real time: the lockout ends with them
        assert all(0 < cache.ttl(key) <= 600 for key in cache.keys("kx:login:*"))
    else:
        with time_machine.travel(start + timedelta(seconds=601), tick=False):
            assert admin_login(client, "bob-secret-42").status_code == 302


def test_a_successful_login_clears_the_failures(bob, limits, client):
    limits(login_max_failures=3)
    admin_login(client, "wrong")
    admin_login(client, "wrong")
    assert admin_login(client, "bob-secret-42").status_code == 302
    client.logout()
    admin_login(client, "wrong")
    admin_login(client, "wrong")
    assert admin_login(client, "bob-secret-42").status_code == 302


def test_browsable_api_login_is_limited_too(bob, limits, client):
    limits(login_max_failures=2)
    for _ in range(2):
        client.post("/api-auth/login/", {"username": "bob", "password": "wrong"})
    r = client.post("/api-auth/login/", {"username": "bob", "password": "bob-secret-42"})
    assert r.status_code == 200 and b"Too many failed login attempts" in r.content


# --- /metrics ----------------------------------------------------------------------------


def test_metrics_aggregates_are_not_recomputed_on_every_scrape(
    client, analysis, django_assert_num_queries
):
    analysis.broadcast("issue_pattern", issue_payload())
    first = client.get("/metrics").content.decode()
    assert 'kx_knowledge_items{knowledge_type="issue_pattern",status="active"} 1.0' in first
    with django_assert_num_queries(0):
        second = client.get("/metrics").content.decode()
    assert 'kx_knowledge_items{knowledge_type="issue_pattern",status="active"} 1.0' in second


def test_metrics_can_require_a_bearer_token(client, limits, db):
    limits(metrics_token="scrape-me")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    r = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me")
    assert r.status_code == 200 and b"kx_event_log_top" in r.content


def test_a_malformed_rate_stops_the_process_at_start():
    from django.core.exceptions import ImproperlyConfigured

    from config.product import ProductSettings

    with pytest.raises(ImproperlyConfigured, match="KE_THROTTLE_RATE_CLIENT"):
        ProductSettings().replace(throttle_rate_client="lots")
    assert ProductSettings().replace(throttle_rate_client="").throttle_rate_client == ""
