"""PostgreSQL plans of the bulk write path (docs/performance.md, "Bulk ingest at 1M").

A bulk asks first whether its worker used any of its idempotency keys before (one
statement with the 500 keys as one array). With an index on ``worker_id`` alone the planner
read it and filtered every record of the worker against the list: the statement grew with
the worker's history (14 ms per bulk at 47,000 records). It must probe ``idem_unique``.
"""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.db import connection

from identity.actions import do_create_worker
from knowledge.actions import BroadcastInput, do_broadcast, do_broadcast_many
from knowledge.models import IdempotencyRecord

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not settings.IS_POSTGRES, reason="query plans are a PostgreSQL matter"),
]

RECORDS = 20_000


def _plan_nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def _explain_analyze(sql: str, params) -> list[dict]:
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        raw = cur.fetchone()[0]
    plan = raw if isinstance(raw, list) else json.loads(raw)
    return list(_plan_nodes(plan[0]["Plan"]))


@pytest.fixture
def think_with_history():
    """Alice's worker ``think`` with a long history of idempotent broadcasts (records
    written directly, as many bulks would have left them), ANALYZEd."""
    think, _ = do_create_worker("think")
    item = do_broadcast(
        think,
        BroadcastInput(
            "risk_pattern", {"pattern": "p", "risk_level": "low", "risk_score": 0.1}, 0.5
        ),
    ).item
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO knowledge_idempotencyrecord "
            "(worker_id, key, request_hash, item_id, outcome, conflict_ids, created_at) "
            "SELECT %s, 'old-' || g, '', %s, 'created', '[]', now() "
            "FROM generate_series(1, %s) AS g",
            [think.pk, item.pk, RECORDS],
        )
        cur.execute("ANALYZE knowledge_idempotencyrecord")
    return think


def test_a_bulks_key_lookup_probes_the_unique_index_not_the_workers_history(think_with_history):
    # Given think's 20,000 earlier records, when a bulk of 500 new keys comes in,
    keys = [f"new-{i}" for i in range(500)]
    captured = []

    def capture(execute, sql, params, many, context):
        if "knowledge_idempotencyrecord" in sql and "LIMIT 1" in sql:
            captured.append((sql, params))
        return execute(sql, params, many, context)

    entries = [
        BroadcastInput(
            "risk_pattern",
            {"pattern": f"p{i}", "risk_level": "low", "risk_score": 0.1},
            0.5,
            idempotency_key=key,
        )
        for i, key in enumerate(keys)
    ]
    with connection.execute_wrapper(capture):
        results = do_broadcast_many(think_with_history, entries)
    assert all(not r.replayed for r in results)
    [(sql, params)] = captured
    # then its look-up reads the (worker, key) index, not every record of the worker.
    nodes = _explain_analyze(sql, params)
    scans = [n for n in nodes if n.get("Relation Name") == "knowledge_idempotencyrecord"]
    assert [n.get("Index Name") for n in scans] == ["idem_unique"], scans
    assert sum(n.get("Rows Removed by Filter", 0) for n in scans) < len(keys)
    assert IdempotencyRecord.objects.filter(worker=think_with_history).count() == RECORDS + 500
