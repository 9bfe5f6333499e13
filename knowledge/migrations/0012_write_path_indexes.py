"""Three indexes fewer to write per bulk item (docs/performance.md, "Bulk ingest at 1M").

- ``knowledgeitem.source_id`` and ``idempotencyrecord.worker_id`` lose their own indexes:
  ``ki_source_type_ts`` / ``ki_source_urg_type_ts`` and ``idem_unique`` lead with the same
  column and serve the same look-ups (and the bulk's key look-up now takes ``idem_unique``
  instead of scanning all of the worker's records through the worker-only index);
- ``knowledgeitem.superseded_by_id`` is indexed only where it is set (``ki_superseded_by``,
  partial): a new item, NULL there, writes no entry.

On a populated table: the partial index is built first (``CONCURRENTLY`` on PostgreSQL, so
writes go on meanwhile; hence ``atomic = False``), then the old indexes are dropped (a
``DROP INDEX`` is a catalog change). Reversible: the way back builds the FK indexes again
and drops the partial one.
"""

import django.db.models.deletion
from django.db import migrations, models

PARTIAL = models.Index(
    condition=models.Q(("superseded_by__isnull", False)),
    fields=["superseded_by"],
    name="ki_superseded_by",
)


def _unindexed_fk(model_name: str, name: str, to: str, on_delete, **options):
    """The field as the model now declares it: the same foreign key, ``db_index=False``."""
    field = models.ForeignKey(to=to, on_delete=on_delete, db_index=False, **options)
    return migrations.AlterField(model_name=model_name, name=name, field=field)


CASCADE, PROTECT, SET_NULL = (
    django.db.models.deletion.CASCADE,
    django.db.models.deletion.PROTECT,
    django.db.models.deletion.SET_NULL,
)
STATE_ALTERATIONS = [
    _unindexed_fk(
        "idempotencyrecord", "worker", "identity.worker", CASCADE, related_name="idempotency_keys"
    ),
    _unindexed_fk("knowledgeitem", "source", "identity.worker", PROTECT, related_name="items"),
    _unindexed_fk(
        "knowledgeitem",
        "superseded_by",
        "knowledge.knowledgeitem",
        SET_NULL,
        related_name="supersedes",
        blank=True,
        null=True,
    ),
]
#: (app label, model, field) whose own index goes; the field keeps its FK constraint.
UNINDEXED = [
    ("knowledge", "IdempotencyRecord", "worker"),
    ("knowledge", "KnowledgeItem", "source"),
    ("knowledge", "KnowledgeItem", "superseded_by"),
]


def _fk_indexes(apps, schema_editor):
    """(model, field, table, column, index name) of each FK index Django created for
    ``UNINDEXED`` (Django's own name for it, the same on every backend)."""
    for app, name, field_name in UNINDEXED:
        model = apps.get_model(app, name)
        column = model._meta.get_field(field_name).column
        table = model._meta.db_table
        yield model, field_name, table, column, schema_editor._create_index_name(table, [column])


def _concurrently(schema_editor) -> str:
    return " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""


def drop_fk_indexes(apps, schema_editor):
    """A plain ``DROP INDEX`` (``CONCURRENTLY`` on PostgreSQL). Not Django's AlterField: on
    PostgreSQL it drops and re-adds each FK constraint, validating it over the whole table
    under a lock that stops writes."""
    for _model, _field, _table, _column, index in _fk_indexes(apps, schema_editor):
        schema_editor.execute(f"DROP INDEX{_concurrently(schema_editor)} IF EXISTS {index}")


def add_fk_indexes(apps, schema_editor):
    for _model, _field, table, column, index in _fk_indexes(apps, schema_editor):
        schema_editor.execute(
            f"CREATE INDEX{_concurrently(schema_editor)} IF NOT EXISTS {index} ON {table} ({column})"
        )


def add_partial(apps, schema_editor):
    model = apps.get_model("knowledge", "KnowledgeItem")
    if schema_editor.connection.vendor == "postgresql":
        # IF NOT EXISTS: a build interrupted halfway leaves an invalid index behind; drop it
        # by hand (DROP INDEX ki_superseded_by) before migrating again.
        schema_editor.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ki_superseded_by ON "
            "knowledge_knowledgeitem (superseded_by_id) WHERE superseded_by_id IS NOT NULL"
        )
    else:
        schema_editor.add_index(model, PARTIAL)


def remove_partial(apps, schema_editor):
    model = apps.get_model("knowledge", "KnowledgeItem")
    schema_editor.remove_index(model, PARTIAL)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("identity", "0002_worker_scope"),
        ("knowledge", "0011_subject_word_suffixes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="knowledgeitem", index=PARTIAL)],
            database_operations=[migrations.RunPython(add_partial, remove_partial)],
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=STATE_ALTERATIONS,
            database_operations=[migrations.RunPython(drop_fk_indexes, add_fk_indexes)],
        ),
    ]
