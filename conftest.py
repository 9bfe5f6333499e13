"""Shared fixtures. Personas are real workers created through the real actions."""

from __future__ import annotations

import os
import time

import psycopg
import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from identity.actions import do_create_worker


def pytest_report_header(config):
    db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    return f"knowledge-exchange backends: database={db} channel_layer={layer} cache={settings.CACHES['default']['BACKEND'].rsplit('.', 1)[-1]}"


def pytest_sessionstart(session):
    if (
        os.environ.get("CI") == "true"
        and os.environ.get("DATABASE_URL")
        and not settings.IS_POSTGRES
    ):
        raise pytest.UsageError("CI: DATABASE_URL is set but the database is not PostgreSQL")


@pytest.fixture(autouse=True)
def _clear_cache():
    # Only this checkout's keys (KEY_PREFIX): another checkout may share the Redis database.
    if hasattr(cache, "delete_pattern"):
        cache.delete_pattern("*")
    else:
        cache.clear()
    yield


class Persona:
    """A worker with its token and an API client authenticated as it."""

    def __init__(self, name: str, kind: str | None = None):
        self.worker, self.token = do_create_worker(name, kind)
        self.name = name
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Token {self.token}")

    def broadcast(self, knowledge_type: str, payload: dict, confidence: float = 0.8, **extra):
        body = {
            "knowledge_type": knowledge_type,
            "payload": payload,
            "confidence": confidence,
            **extra,
        }
        return self.client.post("/api/knowledge/broadcast", body, format="json")


@pytest.fixture
def think(db):
    return Persona("think")


@pytest.fixture
def analysis(db):
    return Persona("analysis")


@pytest.fixture
def learning(db):
    return Persona("learning")


@pytest.fixture
def dream(db):
    return Persona("dream")


@pytest.fixture
def recall(db):
    return Persona("recall")


@pytest.fixture
def staff_client(db, django_user_model):
    user = django_user_model.objects.create_user(
        "alice", "alice@example.com", "pw-alice-123", is_staff=True, is_superuser=True
    )
    client = APIClient()
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def anon_client():
    return APIClient()


def issue_payload(
    rule: str = "long_function", location: str = "app/x.py::f", severity: str = "high"
) -> dict:
    return {"rule": rule, "location": location, "severity": severity}


def risk_payload(pattern: str = "db migration without backfill", level: str = "high") -> dict:
    return {"pattern": pattern, "risk_level": level}


@pytest.fixture(params=["lock", "snapshot"])
def event_ordering(request, settings):
    """Run a test under both ways of keeping the event log's seq order safe for readers
    (``event_ordering``: the tail lock, or the snapshot horizon; knowledge/events.py)."""
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "event_ordering": request.param}
    return request.param


def wait_for_lock_waiter(timeout: float = 20.0) -> bool:
    """PostgreSQL: True once another session of this database waits on a lock (polled, bounded)."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cur.fetchone()[0]:
                return True
            time.sleep(0.02)
    return False


def wait_until_long_poll_parked(timeout: float = 20.0) -> bool:
    """True once a long poll (``GET events?wait=``) of this process is parked on its relay
    (knowledge/long_poll.py): the moment a test publishes to prove the poll is woken."""
    from knowledge.relay import _relays

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(conn.poll for relay in list(_relays) for conn in list(relay.connections)):
            return True
        time.sleep(0.01)
    return False


class PollInThread:
    """``GET events`` with ``params`` in a thread, so the test can act while it waits; the
    answer is in ``.response`` once ``done(timeout)`` is True. ``timeout`` only keeps a broken
    build from hanging the suite: the poll's own ``wait`` is far longer, so a poll that is not
    woken fails the test instead of answering late."""

    def __init__(self, persona, params: dict):
        import threading

        self.response = None

        def run():
            try:
                self.response = persona.client.get("/api/knowledge/events", params)
            finally:
                connection.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def done(self, timeout: float = 60.0) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


def _holds_xid() -> bool:
    """Whether one-transaction tests run with an older xid held open (``_hold_an_xid_open``):
    on PostgreSQL in snapshot ordering unless ``KE_TEST_HOLD_XID=0``; ``KE_TEST_HOLD_XID=1``
    forces it in lock mode too (it changes nothing there: lock-mode readers read MAX(seq))."""
    flag = os.environ.get("KE_TEST_HOLD_XID", "")
    if not settings.IS_POSTGRES or flag == "0":
        return False
    return flag == "1" or settings.KNOWLEDGE_EXCHANGE["event_ordering"] == "snapshot"


@pytest.fixture(scope="session")
def _xid_holder(django_db_setup, django_db_blocker):
    """A second session of the test database, opened once (see ``_hold_an_xid_open``)."""
    with django_db_blocker.unblock():
        s = connection.settings_dict
        other = psycopg.connect(
            host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"],
            password=s["PASSWORD"] or None, dbname=s["NAME"],
        )  # fmt: skip
    yield other
    other.close()


@pytest.fixture(autouse=True)
def _hold_an_xid_open(request):
    """The test-time horizon rule (docs/decisions/event-log-ordering.md, "Tests"): on
    PostgreSQL in snapshot ordering (the default), during each test that runs inside one
    transaction (the ``db`` fixture), another session of the test database holds a
    transaction with an older xid open. The log's horizon then stays below every event the
    test writes, every time, as it would in production if any other transaction were in
    flight: a test that reads its own uncommitted events (which the snapshot design never
    shows, to anyone) fails deterministically instead of only when no other traffic happens
    to hold an xid. Tests of a reader path publish in committed transactions
    (``django_db(transaction=True)``); tests of what an action wrote read the ``Event``
    rows. The rule only makes the horizon stricter, so it cannot hide a reader that passes
    an event in flight. ``KE_TEST_HOLD_XID=0`` turns it off."""
    marker = request.node.get_closest_marker("django_db")
    names = request.fixturenames
    one_transaction = (marker is not None or "db" in names) and not (
        (marker is not None and marker.kwargs.get("transaction"))
        or "transactional_db" in names
        or "live_server" in names
    )
    if not one_transaction or not _holds_xid():
        yield
        return
    other = request.getfixturevalue("_xid_holder")
    other.execute("SELECT pg_current_xact_id()")
    try:
        yield
    finally:
        other.rollback()
