"""Free-text search on the subject: ``q`` = text contained in the subject, case-insensitive.

On PostgreSQL the search reads the subject's words first (migration 0009, docs/performance.md
"Free text"): the longest run of ASCII letters and digits of the term lies inside one word of
every subject that contains the term, so the items whose words include a vocabulary word
containing that run are a superset of the matches. The vocabulary words containing the run
are those with a suffix starting with it (a prefix query on the GIN index of every word's
suffixes, ``ksw_word_suffixes``, migration 0011); the items holding one of them are found
through the ``ki_subject_words`` index; the exact test ``STRPOS(UPPER(subject), UPPER(q)) > 0`` then keeps the matches. The
result is what ``subject__icontains`` gives, only without scanning the trigram index's long
posting lists. Terms without such a run of 3 or more characters, SQLite, and a database
whose ``UPPER`` does not map ASCII letters to ASCII capitals (a Turkish locale) keep
``subject__icontains``, and so does a small table: below ``search_words_min_rows`` items (the
planner's estimate, ``pg_class.reltuples``, read at most once a minute per process) the trigram
scan costs less than the vocabulary look-up (docs/performance.md, "Free text: words or
trigrams").
"""

from __future__ import annotations

import re
import time

from django.db import connection
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL

from config.product import product_settings

MIN_RUN = 3  # shorter runs are inside too many words to narrow anything
_RUN = re.compile(r"[A-Za-z0-9]+")
_WORD = re.compile(r"[A-Z0-9]+")
_ASCII = "abcdefghijklmnopqrstuvwxyz0123456789"
_upper_is_ascii: dict[str, bool] = {}
ROWS_TTL = 60.0
_rows_memo: dict[tuple[str, str], tuple[float, float]] = {}


def words_sql(table: str) -> str:
    """The words of a subject: the ``[A-Z0-9]`` runs of ``UPPER(subject)`` (the expression
    of the ``ki_subject_words`` index, which must match it character for character)."""
    return f"regexp_split_to_array(upper({table}.subject::text), '[^A-Z0-9]+')"


# The vocabulary words containing a run: those with a suffix that starts with it, read from
# the GIN index ``ksw_word_suffixes`` (migration 0011) with a prefix query.
VOCABULARY_SQL = (
    "ARRAY(SELECT word FROM knowledge_subjectword"
    " WHERE knowledge_word_suffixes(word) @@ %s::tsquery)"
)


def prefix_query(run: str) -> str:
    """The ``tsquery`` text of "a lexeme starting with ``run``" (its capitals: the words are
    upper case). ``run`` is ASCII letters and digits only, so the quotes need no escaping."""
    return f"'{run.upper()}':*"


def longest_run(term: str) -> str | None:
    """The longest run of ASCII letters and digits of ``term``, if it has ``MIN_RUN`` or more."""
    runs = _RUN.findall(term)
    best = max(runs, key=len, default="")
    return best if len(best) >= MIN_RUN else None


def _database_upper_is_ascii() -> bool:
    """Whether the database's ``UPPER`` turns ASCII letters into ASCII capitals (asked once
    per database): the pre-filter computes the run's capitals in Python."""
    key = connection.settings_dict["NAME"]
    if key not in _upper_is_ascii:
        with connection.cursor() as cur:
            cur.execute("SELECT upper(%s)", [_ASCII])
            _upper_is_ascii[key] = cur.fetchone()[0] == _ASCII.upper()
    return _upper_is_ascii[key]


def estimated_rows(table: str, max_age: float = ROWS_TTL) -> float:
    """The planner's estimate of ``table``'s rows (0 before its first ANALYZE), read at most
    once per ``max_age`` seconds per database and process (0: read now)."""
    key = (connection.settings_dict["NAME"], table)
    now = time.monotonic()
    memo = _rows_memo.get(key)
    if memo is None or now - memo[1] >= max_age:
        with connection.cursor() as cur:
            cur.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
            row = cur.fetchone()
        memo = (max(float(row[0]), 0.0) if row else 0.0, now)
        _rows_memo[key] = memo
    return memo[0]


def words_pay(table: str) -> bool:
    """Whether ``table`` is large enough for the words to beat the trigram scan."""
    threshold = product_settings().search_words_min_rows
    return threshold <= 0 or estimated_rows(table) >= threshold


def _words_run(table: str, term: str) -> str | None:
    """The run to look up in the vocabulary, or None where ``term`` is searched with
    ``icontains`` (no run of ``MIN_RUN``, SQLite, a non-ASCII ``UPPER``, a small table)."""
    run = longest_run(term)
    if (
        connection.vendor != "postgresql"
        or run is None
        or not _database_upper_is_ascii()
        or not words_pay(table)
    ):
        return None
    return run


def _words_sql(table: str, term: str, run: str) -> tuple[str, list]:
    qt = connection.ops.quote_name(table)
    # STRPOS rather than LIKE: the same test, which the planner cannot send to the trigram
    # index instead of the words.
    return (
        f"({words_sql(qt)} && {VOCABULARY_SQL} AND STRPOS(UPPER({qt}.subject::text), UPPER(%s)) > 0)",
        [prefix_query(run), term],
    )


def contains_sql(table: str, term: str) -> tuple[str, list]:
    """PostgreSQL: the condition "``table``'s subject contains ``term``" as SQL and
    parameters, for statements written by hand (``knowledge.query``): the words where
    ``subject_contains`` reads them, else what ``subject__icontains`` compiles to."""
    run = _words_run(table, term)
    if run is not None:
        return _words_sql(table, term, run)
    qt = connection.ops.quote_name(table)
    return (
        f"UPPER({qt}.subject::text) LIKE UPPER(%s)",
        [f"%{connection.ops.prep_for_like_query(term)}%"],
    )


def subject_contains(qs: QuerySet, term: str) -> QuerySet:
    """``qs`` narrowed to items whose subject contains ``term`` (case-insensitive)."""
    table = qs.model._meta.db_table
    run = _words_run(table, term)
    if run is None:
        return qs.filter(subject__icontains=term)
    sql, params = _words_sql(table, term, run)
    return qs.filter(RawSQL(sql, params, output_field=BooleanField()))


# The vocabulary's new words among ``%s`` (words) and the words of ``%s`` (subjects the
# database splits itself), each probed once in the b-tree ``ksw_word`` (a correlated
# sub-select: ``OFFSET 0`` keeps the planner from a hash anti join that reads every word);
# then the flag that makes the items' insert trigger skip the next statement (migration 0013).
ADD_WORDS_SQL = (
    "WITH added AS (INSERT INTO knowledge_subjectword (word) SELECT w FROM ("
    "SELECT unnest(%s::text[]) AS w UNION "
    "SELECT unnest(regexp_split_to_array(upper(s), '[^A-Z0-9]+')) FROM unnest(%s::text[]) AS s"
    ") AS d WHERE w <> '' AND NOT EXISTS (SELECT 1 FROM knowledge_subjectword v "
    "WHERE v.word >= d.w AND v.word <= d.w OFFSET 0) RETURNING 1) "
    "SELECT set_config('knowledge.words_added', 'on', true)"
)


def add_words(subjects: list[str]) -> None:
    """Add the words of ``subjects`` to the vocabulary for the caller's *next* statement, an
    insert of items with these subjects, and let the items' insert trigger skip that one
    statement (PostgreSQL; a no-op elsewhere). A bulk of 500 items: its ~1,200 distinct words
    probed once each, instead of the trigger's regular expression per row and probe per word
    occurrence (docs/performance.md, "Bulk ingest: the vocabulary from the bulk").

    The words of an ASCII subject are split here (``[A-Z0-9]`` runs of its capitals: what the
    database's ``words_sql`` gives when its ``UPPER`` maps ASCII to ASCII); any other subject
    is sent whole and split by the database, so the vocabulary holds exactly the words the
    ``ki_subject_words`` index does. The skip flag is transaction-local (``set_config(...,
    true)``): a rolled-back savepoint takes it back with the words, and the trigger resets it
    when it skips, so no later statement goes without its words."""
    if connection.vendor != "postgresql":
        return
    words: set[str] = set()
    whole: list[str] = []
    split_here = _database_upper_is_ascii()
    for subject in subjects:
        if split_here and subject.isascii():
            words.update(_WORD.findall(subject.upper()))
        else:
            whole.append(subject)
    with connection.cursor() as cur:
        cur.execute(ADD_WORDS_SQL, [sorted(words), whole])


def fill_vocabulary(cursor) -> None:
    """Add the words of every item to the vocabulary: for rows written with triggers off
    (the bench's COPY seeding under ``session_replication_role = replica``)."""
    table = "knowledge_knowledgeitem"
    cursor.execute(
        "INSERT INTO knowledge_subjectword (word) SELECT DISTINCT w FROM "
        f"{table}, unnest({words_sql(table)}) AS w WHERE w <> '' AND NOT EXISTS "
        "(SELECT 1 FROM knowledge_subjectword v WHERE v.word = w)"
    )
