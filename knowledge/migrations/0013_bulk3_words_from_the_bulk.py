"""The items' insert trigger (0009, 0010) lets a bulk add its words itself.

The statement-level trigger ``ki_subject_words_insert`` adds the words of every inserted row
to the vocabulary. For a bulk of 500 items it split 500 subjects with a regular expression
and probed the vocabulary's b-tree once per word *occurrence* (~3,600 probes for ~1,200
distinct words at 1M items), then dropped the duplicates: ~20 ms of PostgreSQL CPU per bulk,
the largest single part of the item COPY after its indexes (docs/performance.md, "Bulk
ingest: the vocabulary from the bulk").

Now:

- the bulk broadcast sends the distinct words of its subjects (split in Python, where that
  gives the database's words: ``knowledge.search.add_words``) in one statement before its
  COPY, which also sets the transaction-local flag ``knowledge.words_added``; the trigger
  *consumes* the flag (resets it) and skips that one statement. The flag is set with
  ``set_config(..., true)``, so a rolled-back savepoint or transaction takes it back with the
  words; any other insert (one broadcast, the ORM, a restore, a script) still gets its words
  from the trigger;
- where the trigger does the work, it probes each distinct word once (the duplicates are
  dropped first).

Reversible: the way back restores 0010's function. No table is locked (``CREATE OR REPLACE
FUNCTION`` only).
"""

from django.db import migrations

WORDS = "regexp_split_to_array(upper(subject::text), '[^A-Z0-9]+')"
FLAG = "knowledge.words_added"

FORWARD_FILL = (
    "INSERT INTO knowledge_subjectword (word) SELECT w FROM "
    f"(SELECT DISTINCT w FROM new_rows, unnest({WORDS}) AS w) AS d "
    "WHERE w <> '' AND NOT EXISTS "
    "(SELECT 1 FROM knowledge_subjectword v WHERE v.word >= d.w AND v.word <= d.w)"
)
BACKWARD_FILL = (  # 0010's statement
    "INSERT INTO knowledge_subjectword (word) SELECT DISTINCT w FROM new_rows, "
    f"unnest({WORDS}) AS w WHERE w <> '' AND NOT EXISTS "
    "(SELECT 1 FROM knowledge_subjectword v WHERE v.word >= w AND v.word <= w)"
)


def _function(body: str) -> str:
    return f"""CREATE OR REPLACE FUNCTION knowledge_subject_words_add() RETURNS trigger
        LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off AS $$
        BEGIN
            {body}
            RETURN NULL;
        END $$"""


FORWARDS = _function(
    f"""IF current_setting('{FLAG}', true) = 'on' THEN
                -- the statement's words were added by the writer (knowledge.search.add_words):
                -- skip it, and only it
                PERFORM set_config('{FLAG}', 'off', true);
                RETURN NULL;
            END IF;
            {FORWARD_FILL};"""
)
BACKWARDS = _function(f"{BACKWARD_FILL};")


def _execute(sql: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":  # the vocabulary is PostgreSQL's
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0012_write_path_indexes")]

    operations = [migrations.RunPython(_execute(FORWARDS), _execute(BACKWARDS), elidable=False)]
