"""Free-text search on the subject through its words (PostgreSQL only; docs/performance.md, Q4).

``q`` keeps its meaning: text contained in the subject, case-insensitive. The trigram index
(0003) served it, but a search term such as ``mod0042`` is made of trigrams that nearly every
subject has, and the GIN scan decoded posting lists of most of the table (50-100 ms at 1M
items). Words make a pre-filter that reads only the matching rows:

- a subject's *words* are the runs of ``[A-Z0-9]`` of ``UPPER(subject)``; the expression
  index ``ki_subject_words`` (GIN) finds the items holding any of a list of words;
- ``knowledge_subjectword`` is the vocabulary (every word of every item, kept by the
  triggers below, with a trigram index of its own): the words containing a run of the search
  term are found there, among ~100k short words instead of 1M subjects;
- a run of letters and digits of the search term lies inside one word of any subject that
  contains the term, so "has a word containing the run" holds for every match; the exact
  test (``STRPOS(UPPER(subject), UPPER(q)) > 0``) then decides.

The vocabulary has no unique constraint on purpose: two transactions adding the same new
word never wait for each other (a duplicate row is harmless). Words are never removed (items
are never deleted; a stale word only costs a look-up). Rows written with triggers off
(``session_replication_role = replica``, as the bench's seeder does) must add their words
themselves: ``SQL_FILL`` (bench/seed.py runs it).
"""

from django.db import migrations

WORDS = "regexp_split_to_array(upper(subject::text), '[^A-Z0-9]+')"
SQL_FILL = (
    "INSERT INTO knowledge_subjectword (word) SELECT DISTINCT w FROM {source}, "
    f"unnest({WORDS}) AS w WHERE w <> '' AND NOT EXISTS "
    "(SELECT 1 FROM knowledge_subjectword v WHERE v.word = w)"
)


def _function(name: str, source: str) -> str:
    """A trigger function adding the words of the rows in ``source`` to the vocabulary."""
    return f"""CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            {SQL_FILL.format(source=source)};
            RETURN NULL;
        END $$"""


FORWARDS = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE TABLE IF NOT EXISTS knowledge_subjectword (word text NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ksw_word ON knowledge_subjectword (word)",
    "CREATE INDEX IF NOT EXISTS ksw_word_trgm ON knowledge_subjectword USING gin (word gin_trgm_ops)",
    f"CREATE INDEX IF NOT EXISTS ki_subject_words ON knowledge_knowledgeitem USING gin (({WORDS}))",
    _function("knowledge_subject_words_add", "new_rows"),
    _function("knowledge_subject_words_row", "(SELECT NEW.subject) AS new_rows(subject)"),
    "DROP TRIGGER IF EXISTS ki_subject_words_insert ON knowledge_knowledgeitem",
    "CREATE TRIGGER ki_subject_words_insert AFTER INSERT ON knowledge_knowledgeitem "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION knowledge_subject_words_add()",
    "DROP TRIGGER IF EXISTS ki_subject_words_update ON knowledge_knowledgeitem",
    "CREATE TRIGGER ki_subject_words_update AFTER UPDATE OF subject ON knowledge_knowledgeitem "
    "FOR EACH ROW WHEN (OLD.subject IS DISTINCT FROM NEW.subject) "
    "EXECUTE FUNCTION knowledge_subject_words_row()",
    SQL_FILL.format(source="knowledge_knowledgeitem"),
    "ANALYZE knowledge_subjectword",
]

BACKWARDS = [
    "DROP TRIGGER IF EXISTS ki_subject_words_insert ON knowledge_knowledgeitem",
    "DROP TRIGGER IF EXISTS ki_subject_words_update ON knowledge_knowledgeitem",
    "DROP FUNCTION IF EXISTS knowledge_subject_words_add()",
    "DROP FUNCTION IF EXISTS knowledge_subject_words_row()",
    "DROP INDEX IF EXISTS ki_subject_words",
    "DROP TABLE IF EXISTS knowledge_subjectword",
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for sql in statements:
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0008_subject_text_db_default")]

    operations = [migrations.RunPython(_run(FORWARDS), _run(BACKWARDS), elidable=False)]
