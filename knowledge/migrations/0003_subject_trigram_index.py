"""pg_trgm GIN index for free-text search on the subject (PostgreSQL only).

``subject__icontains`` compiles to ``UPPER("subject"::text) LIKE UPPER(%s)`` on
PostgreSQL, so the index is on that expression. On SQLite this migration does nothing.
"""

from django.db import migrations

INDEX = "ki_subject_trgm"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON knowledge_knowledgeitem "
        "USING gin ((UPPER(subject::text)) gin_trgm_ops)"
    )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0002_query_indexes")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
