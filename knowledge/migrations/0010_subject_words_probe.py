"""The vocabulary triggers (0009) probe the vocabulary's b-tree word by word.

Written as ``v.word = w``, the planner could answer the ``NOT EXISTS`` with the vocabulary's
*trigram* index (pg_trgm serves ``=`` too), one GIN scan per word of every inserted row:
eight concurrent bulks of 500 items spent minutes of CPU in it; or with a hash anti join
that reads and hashes the whole vocabulary (105k words at 1M items) on every statement. The
probe is now a range (``v.word >= w AND v.word <= w``, the same test), which only the b-tree
``ksw_word`` can serve, and the functions run with hash and merge joins off.
"""

from django.db import migrations

WORDS = "regexp_split_to_array(upper(subject::text), '[^A-Z0-9]+')"
FILL = (
    "INSERT INTO knowledge_subjectword (word) SELECT DISTINCT w FROM {source}, "
    f"unnest({WORDS}) AS w WHERE w <> '' AND NOT EXISTS "
    "(SELECT 1 FROM knowledge_subjectword v WHERE v.word >= w AND v.word <= w)"
)
FUNCTIONS = {
    "knowledge_subject_words_add": "new_rows",
    "knowledge_subject_words_row": "(SELECT NEW.subject) AS new_rows(subject)",
}


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, source in FUNCTIONS.items():
        schema_editor.execute(
            f"""CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql
            SET enable_hashjoin = off SET enable_mergejoin = off AS $$
            BEGIN
                {FILL.format(source=source)};
                RETURN NULL;
            END $$"""
        )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in FUNCTIONS:
        schema_editor.execute(f"ALTER FUNCTION {name}() RESET ALL")


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0009_subject_words")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
