"""The move of Worker from ``workers`` to ``identity`` keeps every row (a state-only migration).

The database is taken back to the migrations before the move, rows are written with the
models of that state (a worker, an item it broadcast, its inbox cursor, its trust row, a
project), then migrated forward: the rows are there, read through ``identity.Worker`` and the
foreign keys of the apps that point at it.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [
    ("workers", "0002_project"),
    ("knowledge", "0003_subject_trigram_index"),
    ("conflicts", "0001_conflicts_trust_history"),
    ("identity", None),
]
MOVE = [
    ("identity", "0001_initial"),
    ("knowledge", "0004_worker_moved_to_identity"),
    ("conflicts", "0002_worker_moved_to_identity"),
    ("workers", "0003_worker_moved_to_identity"),
]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state([t for t in targets if t[1] is not None]).apps


def _latest():
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


@pytest.mark.django_db(transaction=True)
def test_moving_worker_to_identity_keeps_the_rows():
    old = _migrate(BEFORE)
    try:
        with pytest.raises(LookupError):
            old.get_model("identity", "Worker")
        OldWorker = old.get_model("workers", "Worker")
        alice = OldWorker.objects.create(name="alice", kind="custom", token_hash="h" * 64)
        old.get_model("knowledge", "KnowledgeItem").objects.create(
            knowledge_type="risk_pattern",
            source=alice,
            subject="db migration",
            claim="high",
            payload={"pattern": "db migration", "risk_level": "high"},
            confidence=0.8,
        )
        old.get_model("knowledge", "InboxCursor").objects.create(worker=alice)
        old.get_model("conflicts", "SourceTrust").objects.create(
            worker=alice, knowledge_type="risk_pattern"
        )
        old.get_model("workers", "Project").objects.create(name="repo", path="/tmp/repo")

        new = _migrate(MOVE)

        with pytest.raises(LookupError):
            new.get_model("workers", "Worker")
        Worker = new.get_model("identity", "Worker")
        moved = Worker.objects.get(name="alice")
        assert moved.pk == alice.pk and moved.token_hash == "h" * 64
        item = new.get_model("knowledge", "KnowledgeItem").objects.get(subject="db migration")
        assert item.source_id == moved.pk and item.source.name == "alice"
        assert new.get_model("knowledge", "InboxCursor").objects.get(worker=moved)
        assert (
            new.get_model("conflicts", "SourceTrust").objects.get(worker=moved).knowledge_type
            == "risk_pattern"
        )
        assert new.get_model("workers", "Project").objects.get(name="repo").path == "/tmp/repo"
        # The table did not move: same name, same rows.
        with connection.cursor() as cur:
            cur.execute("SELECT name FROM workers_worker")
            assert [r[0] for r in cur.fetchall()] == ["alice"]
        # A new row after the move takes the next id (PostgreSQL: the sequence came along).
        assert Worker.objects.create(name="bob", token_hash="b" * 64).pk > moved.pk
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_the_moved_content_type_keeps_its_permissions():
    """Admin permissions on workers hang on the content type, which is relabelled, not recreated."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    ct = ContentType.objects.get(app_label="identity", model="worker")
    perm_ids = set(Permission.objects.filter(content_type=ct).values_list("pk", flat=True))
    assert perm_ids  # add/change/delete/view
    _migrate(BEFORE)
    try:
        assert not ContentType.objects.filter(app_label="identity", model="worker").exists()
        assert ContentType.objects.get(app_label="workers", model="worker").pk == ct.pk
    finally:
        _migrate(_latest())
    after = ContentType.objects.get(app_label="identity", model="worker")
    assert after.pk == ct.pk
    assert (
        set(Permission.objects.filter(content_type=after).values_list("pk", flat=True)) == perm_ids
    )
