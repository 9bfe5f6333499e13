"""The live-feed page, connection tracking in the dashboard, GET stats and /metrics."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.db import transaction
from django.test import Client

from knowledge.events import publish_event
from knowledge.tests.test_consumers import (  # noqa: F401 (autouse fixture)
    _close_async_db_connections,
    connect,
    subscribe,
)

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def alice(django_user_model):
    user = django_user_model.objects.create_user("alice", "a@x.org", "pw-alice-123", is_staff=True)
    c = Client()
    c.force_login(user)
    return c


def test_live_page_is_staff_only_and_renders_the_log_position(alice, django_user_model):
    assert Client().get("/dashboard/live/").status_code == 302  # to the login page
    bob = django_user_model.objects.create_user("bob", "b@x.org", "pw-bob-12345")
    c = Client()
    c.force_login(bob)
    assert c.get("/dashboard/live/").status_code == 302

    with transaction.atomic():
        seq = publish_event("knowledge_broadcast", {}).seq
    r = alice.get("/dashboard/live/")
    html = r.content.decode()
    assert r.status_code == 200
    assert f'data-since="{seq}"' in html and "js/knowledge-socket.js" in html
    assert 'id="feed-status"' in html and 'value="conflict_detected"' in html


async def test_connections_page_stats_and_metrics_show_who_is_connected(alice, think):
    ws = await connect(think.token)
    await subscribe(ws, since=None, types=["risk_pattern"], events=["knowledge_broadcast"])
    get = database_sync_to_async(alice.get)

    page = (await get("/dashboard/live/connections/")).content.decode()
    assert (
        "worker:think" in page
        and "types: risk_pattern" in page
        and "events: knowledge_broadcast" in page
    )
    stats = (await get("/api/knowledge/stats")).json()["realtime"]
    assert stats["connections"] == 1 and stats["workers"] == ["worker:think"]
    metrics = (await get("/metrics")).content.decode()
    assert "kx_ws_connections 1.0" in metrics

    await ws.disconnect()
    stats = (await get("/api/knowledge/stats")).json()["realtime"]
    assert stats["connections"] == 0
