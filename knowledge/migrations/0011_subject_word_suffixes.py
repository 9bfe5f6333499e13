"""The vocabulary (0009) is searched through the suffixes of its words, not trigrams.

Free text looks up the vocabulary words that contain the longest run of the search term
(knowledge/search.py). With ``word LIKE '%RUN%'`` neither of the vocabulary's plans was cheap
at 1M items (105k words, mostly ``FN12345`` and ``MOD1234``): the trigram index decoded the
posting lists of ``MOD`` and of digit triples held by most words (525 pages, ~7 ms), and the
planner preferred a sequential scan of all the words (466 pages, 6-15 ms): 80-95 % of the
database time of ``q=modNNNN`` (docs/performance.md, "Free text at 1M (2026-12-02)").

A word contains the run exactly when one of its suffixes starts with it. The GIN index
``ksw_word_suffixes`` holds every suffix of every word as a ``tsvector`` lexeme (built as is:
no parser, no lower-casing), and a prefix query (``'RUN':*``) reads the lexemes from ``RUN``
onwards in byte order: the words containing the run, and nothing else (~0.02 ms).

Only the vocabulary gets a new index: a new word costs one GIN entry per suffix, written
at once (no pending list: a search would read it all), ~40 us per new word; the words
trigger's statement is unchanged. The trigram index of the vocabulary (``ksw_word_trgm``) had
no reader left and is dropped (0010: it only ever misled the trigger's probe). The items'
words index ``ki_subject_words`` gets a short pending list (below).
"""

from functools import partial

from django.db import migrations

SUFFIXES = "knowledge_word_suffixes"
FORWARDS = [
    # Immutable (an index expression), not inlinable (a sub-select), so the planner matches
    # the index on the call as written. Every function it calls is in pg_catalog.
    f"""CREATE OR REPLACE FUNCTION {SUFFIXES}(w text) RETURNS tsvector
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
        SELECT pg_catalog.array_to_tsvector(ARRAY(
            SELECT pg_catalog.substr(w, i) FROM pg_catalog.generate_series(1, pg_catalog.length(w)) AS i
        )) $$""",
    # A cost well above the default so that the planner never prefers computing the suffixes
    # of every word (a sequential scan) to the index.
    f"ALTER FUNCTION {SUFFIXES}(text) COST 1000",
    # fastupdate off: a new word goes straight into the tree. With GIN's pending list (the
    # default) every search scanned the words added since the last vacuum, up to 4 MB: all
    # 14,000 words of a table seeded at 10,000 items (241 pages, ~5 ms per search).
    f"CREATE INDEX IF NOT EXISTS ksw_word_suffixes ON knowledge_subjectword "
    f"USING gin (({SUFFIXES}(word))) WITH (fastupdate = off)",
    "DROP INDEX IF EXISTS ksw_word_trgm",
    "ANALYZE knowledge_subjectword",
    # The items' words index keeps GIN's pending list (cheap inserts), but a short one: every
    # search reads all of it. At 1M items, after 16,000 inserted items (293 pending pages) the
    # words index scan of q=modNNNN took 8-17 ms instead of 0.05 ms. With 256 kB (the server's
    # default is 4 MB) a search reads at most 32 pending pages, and the inserts do the same
    # work in all, merged in smaller steps by the writing statement instead of at vacuum:
    # 20,000 subjects in statements of 500 cost 0.77 s, against 0.49 s + 0.28-0.33 s of merge
    # with 4 MB (and 1.5 s with fastupdate off).
    "ALTER INDEX ki_subject_words SET (gin_pending_list_limit = 256)",
    "SELECT gin_clean_pending_list('ki_subject_words'::regclass)",  # what is pending now
]
BACKWARDS = [
    "ALTER INDEX ki_subject_words RESET (gin_pending_list_limit)",
    "CREATE INDEX IF NOT EXISTS ksw_word_trgm ON knowledge_subjectword "
    "USING gin (word gin_trgm_ops)",
    "DROP INDEX IF EXISTS ksw_word_suffixes",
    f"DROP FUNCTION IF EXISTS {SUFFIXES}(text)",
]


def _execute(statements, apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":  # the vocabulary is PostgreSQL's
        for sql in statements:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0010_subject_words_probe")]
    operations = [
        migrations.RunPython(
            partial(_execute, FORWARDS), partial(_execute, BACKWARDS), elidable=False
        )
    ]
