"""``GET stats`` from the shared item groups (knowledge/stats.py): the same numbers as counting
what each viewer may see, without a scan of the item table per request."""

from __future__ import annotations

import time

import pytest
import time_machine
from django.db import connection
from django.db.models import Count, Q
from django.test.utils import CaptureQueriesContext

from conftest import issue_payload, risk_payload
from identity.models import WorkerScope
from knowledge.models import KnowledgeItem
from knowledge.stats import collect_stats


def reference(viewer) -> dict:
    """The counts straight from the one visibility rule (``KnowledgeItem.visible_to``)."""
    items = (
        KnowledgeItem.objects.all() if viewer is None else KnowledgeItem.objects.visible_to(viewer)
    )
    totals = items.aggregate(
        total=Count("id"),
        active=Count("id", filter=Q(status="active")),
        superseded=Count("id", filter=Q(status="superseded")),
        validated=Count("id", filter=~Q(validation_status="unvalidated")),
        confirmed=Count("id", filter=Q(validation_status="confirmed")),
        disputed=Count("id", filter=Q(validation_status="disputed")),
    )
    return {
        "items": totals,
        "by_type": dict(items.values_list("knowledge_type").annotate(n=Count("id")).order_by()),
        "by_source": dict(items.values_list("source__name").annotate(n=Count("id")).order_by()),
    }


def counted(stats: dict) -> dict:
    items = {k: v for k, v in stats["items"].items() if k != "last_24h"}
    return {"items": items, "by_type": stats["by_type"], "by_source": stats["by_source"]}


ITEM_TABLE = 'FROM "knowledge_knowledgeitem"'
ADDRESSED_ONLY = (
    f'{ITEM_TABLE} WHERE ("knowledge_knowledgeitem"."id" IN (SELECT U0."item_id" AS "item_id" '
    'FROM "knowledge_knowledgetarget"'
)


def item_table_scans(queries) -> list[str]:
    """Statements over the item table (not merely joining it) not restricted to the items
    addressed to one worker through its target links."""
    return [q["sql"] for q in queries if ITEM_TABLE in q["sql"] and ADDRESSED_ONLY not in q["sql"]]


@pytest.mark.parametrize("scope_mode", ["open", "registry"])
def test_each_viewer_counts_exactly_what_it_may_see(
    settings, scope_mode, analysis, think, dream, learning
):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "scope_mode": scope_mode}
    # Untargeted, targeted at one or two workers, an author's own targeted item, a superseded
    # one (revised by its author), validated ones, a read scope narrowed by an admin.
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f", severity="low"))
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f", severity="high"))
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::g"), targets=["dream"])
    think.broadcast(
        "risk_pattern", risk_payload("told dream and learning"), targets=["dream", "learning"]
    )
    mine = think.broadcast("risk_pattern", risk_payload("told analysis"), targets=["analysis"])
    public = think.broadcast("risk_pattern", risk_payload("for everyone")).json()["item"]["id"]
    for verdict, who in (("confirmed", analysis), ("disputed", dream)):
        who.client.post(
            "/api/knowledge/validate", {"item": public, "verdict": verdict}, format="json"
        )
    assert mine.status_code == 201
    WorkerScope.objects.create(worker=learning.worker, read_types=["issue_pattern"])
    assert KnowledgeItem.objects.filter(status="superseded").exists()

    for viewer in (analysis, think, dream, learning, None):
        worker = viewer.worker if viewer else None
        assert counted(collect_stats(worker)) == reference(worker), viewer and viewer.name
    # Through the API too, for a worker whose numbers differ from everyone's.
    assert counted(learning.client.get("/api/knowledge/stats").json()) == reference(learning.worker)


def test_a_flood_of_stats_reads_no_whole_table(analysis, think, dream, staff_client):
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    analysis.broadcast("issue_pattern", issue_payload(location="b.py::g"), targets=["dream"])
    think.client.get("/api/knowledge/stats")  # counts the table into groups
    with CaptureQueriesContext(connection) as person:
        assert staff_client.get("/api/knowledge/stats").json()["items"]["total"] == 2
    with CaptureQueriesContext(connection) as worker:
        for _ in range(3):
            assert dream.client.get("/api/knowledge/stats").json()["items"]["total"] == 2
    # Neither counts the table again (before: three counts of it per request); a worker's
    # request reads the items addressed to it (and its conflicts join their items).
    assert item_table_scans(person.captured_queries) == []
    assert item_table_scans(worker.captured_queries) == []
    assert sum(ADDRESSED_ONLY in q["sql"] for q in worker.captured_queries) == 3


def test_the_numbers_are_at_most_metrics_cache_seconds_old(settings, analysis, think):
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "metrics_cache_seconds": 5.0}
    analysis.broadcast("issue_pattern", issue_payload(location="a.py::f"))
    start = time.time()
    with time_machine.travel(start, tick=False) as clock:
        before = think.client.get("/api/knowledge/stats").json()
        analysis.broadcast("issue_pattern", issue_payload(location="b.py::g"))
        clock.shift(5.5)
        after = think.client.get("/api/knowledge/stats").json()
    assert (before["items"]["total"], after["items"]["total"]) == (1, 2)
    assert after["counted_at"] > before["counted_at"]
