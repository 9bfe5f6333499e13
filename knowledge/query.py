"""Knowledge queries: filters, freshness across types, sorting and keyset (cursor) pagination.

One ``KnowledgeQuery`` serves ``GET query`` (query string) and ``POST query`` (JSON body),
the SDK's in-process transport and the dashboard. Freshness filters compile to one
``observed_at`` range per type (see ``KnowledgeItemQuerySet.fresh``). Sorting by freshness
across types with different decay orders by ln(freshness) = -(as_of - observed)/decay,
computed at a fixed ``as_of`` carried in the cursor so pages stay consistent.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connection
from django.db.models import Case, F, FloatField, Q, Value, When
from django.utils import timezone

from config.product import product_settings
from identity.models import Worker
from knowledge import cache as knowledge_cache
from knowledge import item_hooks, search
from knowledge.choices import ItemStatus
from knowledge.models import ITEM_COLUMNS, KnowledgeItem, KnowledgeTarget, item_dict
from knowledge.registry import normalise, registry
from knowledge.scopes import read_types

SORTS = {
    "freshness": "freshness",
    "created_at": "created_at",
    "observed_at": "observed_at",
    "confidence": "confidence",
    "urgency": "urgency",
}
DEFAULT_SORT = "-freshness"


class QueryError(ValueError):
    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass
class KnowledgeQuery:
    types: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    urgencies: list[int] = field(default_factory=list)
    min_urgency: int | None = None
    min_freshness: float = 0.0
    min_confidence: float | None = None
    max_confidence: float | None = None
    statuses: list[str] = field(default_factory=lambda: [ItemStatus.ACTIVE.value])
    validation_statuses: list[str] = field(default_factory=list)
    created_after: datetime | None = None
    created_before: datetime | None = None
    target: str | None = None
    subject: str | None = None
    q: str | None = None
    contested: bool | None = None
    sort: str = DEFAULT_SORT
    limit: int = 50
    cursor: str | None = None

    def cache_params(self, viewer: str | None) -> dict:
        params = dict(self.__dict__)  # shallow: only hashed (``asdict`` deep-copies)
        params["viewer"] = viewer
        params["page"] = PAGE_FORMAT  # a cached page written in another shape is never read
        return params


@dataclass
class Cursor:
    key: object
    id: int
    as_of: float

    def encode(self) -> str:
        raw = json.dumps({"k": self.key, "i": self.id, "a": self.as_of}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """A cursor from its token; anything a client may have forged is a QueryError (400):
        the key must be a finite number or a short string, the id a 64-bit row id, ``as_of``
        a finite timestamp between 1970 and 9999."""
        try:
            padded = token + "=" * (-len(token) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded.encode()))
            key, item_id, as_of = data["k"], data["i"], data["a"]
        except (ValueError, KeyError, TypeError, IndexError, binascii.Error, RecursionError):
            raise _bad_cursor() from None
        if not _is_number(item_id) or not isinstance(item_id, int) or not 0 <= item_id <= MAX_ID:
            raise _bad_cursor()
        if not _is_number(as_of) or not 0 <= as_of <= MAX_TIMESTAMP:
            raise _bad_cursor()
        if not (_is_number(key) or (isinstance(key, str) and len(key) <= 64)):
            raise _bad_cursor()
        return cls(key=key, id=item_id, as_of=float(as_of))

    def check_key(self, sort_name: str) -> None:
        """The key must fit the sort it continues: a time for time sorts, else a number."""
        if sort_name in ("created_at", "observed_at"):
            try:
                moment = datetime.fromisoformat(self.key) if isinstance(self.key, str) else None
                if moment is None or moment.tzinfo is None:
                    raise ValueError
                moment.astimezone(UTC)
            except (ValueError, OverflowError):
                raise _bad_cursor() from None
        elif not _is_number(self.key) or not -MAX_KEY <= self.key <= MAX_KEY:
            raise _bad_cursor()


MAX_ID = 2**63 - 1
MAX_TIMESTAMP = 253402300799.0  # 9999-12-31T23:59:59Z
# Sort keys are confidences, urgencies, timestamps or ln(freshness); nothing real is larger.
MAX_KEY = 1e15


def _is_number(value) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _bad_cursor() -> QueryError:
    return QueryError("cursor", "is not a valid cursor (pass back the 'next' value)")


def _sort_spec(sort: str) -> tuple[str, bool]:
    descending = sort.startswith("-")
    name = sort.lstrip("-+")
    if name not in SORTS:
        raise QueryError("sort", f"must be one of {sorted(SORTS)} with an optional '-' prefix")
    return name, descending


def build_queryset(
    query: KnowledgeQuery,
    viewer: Worker | None,
    as_of: datetime,
    source_ids: list[int] | None = None,
    per_type: bool = True,
):
    """The filtered queryset. ``source_ids`` are ``query.sources``
    already resolved (see ``_source_ids``). ``per_type=False`` leaves out the type and
    freshness filters (``_merge_by_freshness`` adds them per branch)."""
    qs = KnowledgeItem.objects.all()
    if viewer is not None:
        qs = qs.visible_to(viewer)
    if query.types and per_type:
        qs = qs.filter(knowledge_type__in=query.types)
    if query.sources:
        # Names -> ids first (a tiny indexed lookup), so the planner sees a plain
        # ``source_id = ...`` it can match to the (source, type, status, ts) index.
        ids = source_ids if source_ids is not None else _source_ids(query)
        qs = qs.filter(source_id__in=ids) if ids else qs.none()
    if query.urgencies:
        qs = qs.filter(urgency__in=query.urgencies)
    if query.min_urgency is not None:
        qs = qs.filter(urgency__gte=query.min_urgency)
    if query.min_confidence is not None:
        qs = qs.filter(confidence__gte=query.min_confidence)
    if query.max_confidence is not None:
        qs = qs.filter(confidence__lte=query.max_confidence)
    if query.statuses:
        qs = qs.filter(status__in=query.statuses)
    if query.validation_statuses:
        qs = qs.filter(validation_status__in=query.validation_statuses)
    if query.created_after:
        qs = qs.filter(created_at__gte=query.created_after)
    if query.created_before:
        qs = qs.filter(created_at__lt=query.created_before)
    if query.target:
        qs = qs.filter(
            pk__in=KnowledgeTarget.objects.filter(worker__name=query.target).values("item_id")
        )
    if query.subject:
        # Case-insensitive: the normalised subject, whatever case the item was sent in.
        qs = qs.filter(subject=normalise(query.subject))
    if query.q:
        # PostgreSQL: the subject's words first, then the exact test (knowledge/search.py).
        qs = search.subject_contains(qs, query.q)
    if query.contested is not None:
        ids = item_hooks.contested_ids()
        if ids is None:
            qs = qs.none() if query.contested else qs
        else:
            qs = (qs.filter if query.contested else qs.exclude)(pk__in=ids)
    if query.min_freshness > 0 and per_type:
        qs = qs.filter(_fresh_condition(query.min_freshness, query.types, as_of))
    return qs


def _source_ids(query: KnowledgeQuery) -> list[int]:
    if not query.sources:
        return []
    return list(
        Worker.objects.filter(name__in=query.sources).order_by().values_list("id", flat=True)
    )


def _fresh_condition(min_freshness: float, types: list[str], as_of: datetime) -> Q:
    """freshness >= f  <=>  observed_ts >= as_of - max_age(type, f): one range per type on
    ``observed_ts``, the column the (type, status, observed_ts) index is ordered by."""
    as_of_ts = as_of.timestamp()
    cond = Q()
    for name, max_age in registry.max_ages(types or registry.names(), min_freshness).items():
        cond |= Q(knowledge_type=name, observed_ts__gte=as_of_ts - min(max_age, 3650 * 86400))
    return cond if cond else Q(pk__in=[])


def _freshness_key(types: list[str], as_of_ts: float):
    """ln(freshness) at as_of: -(as_of - observed_ts) / decay(type)."""
    names = types or registry.names()
    inv_decay = Case(
        *[When(knowledge_type=n, then=Value(1.0 / registry.decay_of(n))) for n in names],
        default=Value(1.0 / registry.decay_of("")),
        output_field=FloatField(),
    )
    return (F("observed_ts") - Value(as_of_ts)) * inv_decay


def _after_cursor(qs, key_name: str, key_value, cursor_id: int, descending: bool, bound=None):
    """Rows strictly after the cursor in (key, id) order. ``bound`` (default the key itself)
    is a redundant, index-usable range on the sort column so the scan starts at the cursor
    instead of filtering every row before it."""
    if descending:
        qs = qs.filter(
            Q(**{f"{key_name}__lt": key_value}) | Q(**{key_name: key_value, "id__lt": cursor_id})
        )
    else:
        qs = qs.filter(
            Q(**{f"{key_name}__gt": key_value}) | Q(**{key_name: key_value, "id__gt": cursor_id})
        )
    if bound is not None:
        column, value = bound
        qs = qs.filter(**{f"{column}__{'lte' if descending else 'gte'}": value})
    return qs


_UNSET = object()  # "compute the shared WHERE here"


def _merge_by_freshness(
    query: KnowledgeQuery, viewer, as_of: datetime, cursor, descending: bool, shared=_UNSET
):
    """Freshness order across several types, one index range scan per type.

    Within one type freshness order is ``observed_ts`` order, so the top ``limit + 1`` of
    each type (an index scan on (type, status, observed_ts) that stops early) are merged by
    ln(freshness) in one ``UNION ALL`` statement; then the rows are loaded by id. Cost grows
    with the number of types and the page size, not with the table.

    The filters other than type and freshness are compiled by the ORM once and shared by
    every branch (compiling ten ORM branches cost more than running them).
    """
    as_of_ts = as_of.timestamp()
    if shared is _UNSET:
        shared = _shared_where(query, viewer, as_of)
    if shared is None:
        return []
    where_sql, where_params = shared
    qn = connection.ops.quote_name
    table = qn(KnowledgeItem._meta.db_table)
    ts, pk, kind = (
        f"{table}.{qn('observed_ts')}",
        f"{table}.{qn('id')}",
        f"{table}.{qn('knowledge_type')}",
    )
    direction, cmp = ("DESC", "<") if descending else ("ASC", ">")
    branches, params = [], []
    for name in query.types or registry.names():
        decay = registry.decay_of(name)
        inv = 1.0 / decay
        conds, args = [f"{kind} = %s"], [name]
        if where_sql:
            conds.append(f"({where_sql})")
            args += where_params
        if query.min_freshness > 0:
            max_age = min(registry.decay_of(name) * -math.log(query.min_freshness), 3650 * 86400)
            conds.append(f"{ts} >= %s")
            args.append(as_of_ts - max_age)
        if cursor is not None:
            # key < k  <=>  observed_ts < as_of + k * decay: the range (one second of slack)
            # lets the index start at the cursor; the exact (key, id) comparison decides.
            key = float(cursor.key)
            bound = as_of_ts + key * decay + (1.0 if descending else -1.0)
            conds.append(
                f"{ts} {'<=' if descending else '>='} %s AND ((({ts} - %s) * %s) {cmp} %s "
                f"OR ((({ts} - %s) * %s) = %s AND {pk} {cmp} %s))"
            )
            args += [bound, as_of_ts, inv, key, as_of_ts, inv, key, cursor.id]
        branches.append(
            f"(SELECT {pk} AS id, (({ts} - %s) * %s) AS k FROM {table} WHERE {' AND '.join(conds)} "
            f"ORDER BY {ts} {direction}, {pk} {direction} LIMIT %s)"
        )
        params += [as_of_ts, inv, *args, query.limit + 1]
    # The page's rows in the same statement (joined back to the items and their source),
    # as ``ITEM_COLUMNS`` tuples plus the key: no model instances, no second round trip.
    workers = qn(Worker._meta.db_table)
    columns = ", ".join(_lean_columns(table, workers))
    sql = (
        f"SELECT {columns}, page.k FROM (SELECT id, k FROM ({' UNION ALL '.join(branches)}) "
        f"AS branches ORDER BY k {direction}, id {direction} LIMIT %s) AS page "
        f"JOIN {table} ON {pk} = page.id JOIN {workers} ON {workers}.{qn('id')} = "
        f"{table}.{qn('source_id')} ORDER BY page.k {direction}, page.id {direction}"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [*params, query.limit + 1])
        return [_decode_json(row) for row in cur.fetchall()]


def _one_statement_by_freshness(
    query: KnowledgeQuery, viewer, as_of: datetime, cursor, descending: bool, shared=_UNSET
) -> list:
    """The page of a query over any number of types but one, without a minimum freshness,
    in freshness order, as one statement that sorts every matching row:

    - free text (``q``): the statement ``build_queryset`` + ``_freshness_key`` +
      ``_after_cursor`` compile to, with the same key values (the same floats, the same
      ``CASE``) so the same rows come in the same order, written here around the memoised
      shared WHERE (``_shared_where``, without ``q``) and the search's condition
      (``search.contains_sql``). Building and compiling that queryset (the ten-way ``CASE``,
      the search, the visibility) through the ORM cost ~2-3 ms per request, more than the
      statement itself once the vocabulary is read through its suffix index;
    - without ``q``, when few rows match (``_few_matches``): what ``_merge_by_freshness``
      answers (its types: the registered ones when none are asked for), without planning one
      branch per type."""
    if shared is _UNSET:
        shared = _shared_where(dataclasses.replace(query, q=None), viewer, as_of)
    if shared is None:
        return []
    where_sql, where_params = shared
    qn = connection.ops.quote_name
    table_name = KnowledgeItem._meta.db_table
    table, workers = qn(table_name), qn(Worker._meta.db_table)
    ts, pk, kind = (
        f"{table}.{qn('observed_ts')}",
        f"{table}.{qn('id')}",
        f"{table}.{qn('knowledge_type')}",
    )
    names = query.types or registry.names()
    key_sql = f"(({ts} - %s) * CASE {kind} {'WHEN %s THEN %s ' * len(names)}ELSE %s END)"
    key_params = [as_of.timestamp()]
    for name in names:
        key_params += [name, 1.0 / registry.decay_of(name)]
    key_params.append(1.0 / registry.decay_of(""))
    conds, args = [], []
    if query.q:
        text_sql, text_params = search.contains_sql(table_name, query.q)
        conds.append(text_sql)
        args += text_params
    if where_sql:
        conds.append(f"({where_sql})")
        args += where_params
    # Free text over all types keeps the ORM path's rows (any type); the merge reads only
    # the registered types.
    types = query.types or ([] if query.q else registry.names())
    if types:
        conds.append(f"{kind} IN ({', '.join(['%s'] * len(types))})")
        args += types
    direction, cmp = ("DESC", "<") if descending else ("ASC", ">")
    if cursor is not None:
        key = float(cursor.key)
        conds.append(f"({key_sql} {cmp} %s OR ({key_sql} = %s AND {pk} {cmp} %s))")
        args += [*key_params, key, *key_params, key, cursor.id]
    columns = ", ".join(_lean_columns(table, workers))
    sql = (
        f"SELECT {columns}, {key_sql} AS k FROM {table} JOIN {workers} ON "
        f"{workers}.{qn('id')} = {table}.{qn('source_id')} WHERE {' AND '.join(conds) or 'TRUE'} "
        f"ORDER BY k {direction}, {pk} {direction} LIMIT %s"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [*key_params, *args, query.limit + 1])
        return [_decode_json(row) for row in cur.fetchall()]


# Sorting every match in one statement beats one index scan per type up to about this many
# matching rows (10,000 items: 330 matches 0.6x the time of the merge, 2,000 matches 0.8x,
# all 10,000 2.4x; docs/performance.md, "Free text at 1M (2026-12-02)").
ONE_STATEMENT_MAX_ROWS = 2_000
MATCHES_TTL = 60.0
_MATCHES_MEMO: dict[tuple, tuple[float, float]] = {}


def _few_matches(query: KnowledgeQuery, shared: tuple[str, tuple] | None) -> bool:
    """Whether the planner expects at most ``ONE_STATEMENT_MAX_ROWS`` rows to match the
    filters of a query with a source or urgency filter (its ``shared`` WHERE and the types),
    asked with ``EXPLAIN`` at most once per ``MATCHES_TTL`` seconds per filters and process.
    Query Q3 (``sources=<s>&urgency=high``) at 10,000 items: ~330."""
    if (
        not (query.sources or query.urgencies)
        or query.min_freshness > 0
        or query.contested is not None  # a live set of ids: not worth an EXPLAIN each time
    ):
        return False
    if shared is None:
        return False
    where_sql, where_params = shared
    types = tuple(query.types or registry.names())
    key = (connection.settings_dict["NAME"], where_sql, where_params, types)
    now = time.monotonic()
    memo = _MATCHES_MEMO.get(key)
    if memo is None or now - memo[1] >= MATCHES_TTL:
        table = connection.ops.quote_name(KnowledgeItem._meta.db_table)
        kind = f"{table}.{connection.ops.quote_name('knowledge_type')}"
        sql = (
            f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {table} WHERE {kind} IN "
            f"({', '.join(['%s'] * len(types))})" + (f" AND ({where_sql})" if where_sql else "")
        )
        with connection.cursor() as cur:
            cur.execute(sql, [*types, *where_params])
            raw = cur.fetchone()[0]
        plan = raw if isinstance(raw, list) else json.loads(raw)
        if len(_MATCHES_MEMO) >= _WHERE_MEMO_SIZE:
            _MATCHES_MEMO.pop(next(iter(_MATCHES_MEMO), None), None)
        memo = _MATCHES_MEMO[key] = (float(plan[0]["Plan"]["Plan Rows"]), now)
    return memo[0] <= ONE_STATEMENT_MAX_ROWS


_WHERE_MEMO: dict[tuple, tuple[str, tuple] | None] = {}
_WHERE_MEMO_SIZE = 512


def _shared_where(query: KnowledgeQuery, viewer, as_of: datetime) -> tuple[str, list] | None:
    """The compiled WHERE of the filters other than type and freshness (``build_queryset``
    with ``per_type=False``; None when it selects nothing), memoised per process by all it
    depends on: the viewer, its read scope, the sources' ids and the other filters. Building
    and compiling it through the ORM was ~1.5 ms of an uncached multi-type query
    (docs/performance.md, "One thread hop per request"). A ``contested`` filter (a live set
    of ids) is compiled every time."""
    source_ids = _source_ids(query)
    key = None
    if query.contested is None:
        filters = dataclasses.replace(
            query, types=[], min_freshness=0.0, sort="", limit=0, cursor=None
        )
        key = (
            connection.vendor,
            viewer.pk if viewer is not None else None,
            read_types(viewer) if viewer is not None else None,
            tuple(source_ids),
            repr(filters),
        )
        if key in _WHERE_MEMO:
            return _WHERE_MEMO[key]
    base = build_queryset(query, viewer, as_of, source_ids=source_ids, per_type=False)
    compiler = base.query.get_compiler(using=base.db)
    try:
        where_sql, where_params = compiler.compile(base.query.where)
        shared = (where_sql, tuple(where_params))
    except EmptyResultSet:
        shared = None
    except FullResultSet:
        shared = ("", ())
    if key is not None:
        if len(_WHERE_MEMO) >= _WHERE_MEMO_SIZE:
            _WHERE_MEMO.pop(next(iter(_WHERE_MEMO), None), None)
        _WHERE_MEMO[key] = shared
    return shared


def _lean_columns(table: str, workers: str) -> list[str]:
    qn = connection.ops.quote_name
    out = []
    for name in ITEM_COLUMNS:
        if name == "source__name":
            out.append(f"{workers}.{qn('name')}")
        else:
            out.append(f"{table}.{qn(name)}")
    return out


_PAYLOAD, _TARGETS = ITEM_COLUMNS.index("payload"), ITEM_COLUMNS.index("target_names")
_JSON_FIELD = KnowledgeItem._meta.get_field("payload")


# orjson decodes an integer outside -2**63..2**64-1 as a float (the standard library keeps it
# exact), and every such integer has at least 19 digits in a row: text with such a run (in a
# number or a string alike) is decoded by the field itself. (jsonb writes numbers without
# exponents, so 1e300 and 5e-324 come back as long runs of digits and take that path too.)
_LONG_DIGIT_RUN = re.compile(r"\d{19}")


def _json_column(text: str):
    """A JSON column's text decoded as ``JSONField.from_db_value`` decodes it, by orjson
    where that gives the same value (~10x cheaper than the standard library: 50 payloads
    per page)."""
    if _LONG_DIGIT_RUN.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # what the field does with it (e.g. its answer for text that is not JSON)
    return _JSON_FIELD.from_db_value(text, None, connection)


def _decode_json(row: tuple) -> list:
    """The JSON columns of a lean row decoded as the ORM would decode them."""
    row = list(row)
    payload, targets = row[_PAYLOAD], row[_TARGETS]
    if isinstance(payload, str):
        row[_PAYLOAD] = _json_column(payload)
    if targets == "[]":
        row[_TARGETS] = []
    elif isinstance(targets, str):
        row[_TARGETS] = _json_column(targets)
    return row


def run_query(query: KnowledgeQuery, viewer: Worker | None) -> dict:
    """Execute a query; returns ``{"results": [...], "next": cursor|None, "as_of": iso}``."""
    sort_name, descending = _sort_spec(query.sort)
    cursor = Cursor.decode(query.cursor) if query.cursor else None
    if cursor is not None:
        cursor.check_key(sort_name)
    now = timezone.now()
    as_of = datetime.fromtimestamp(cursor.as_of, tz=UTC) if cursor else now

    key_name = sort_name
    if (
        sort_name == "freshness"
        and (len(query.types) != 1 or query.types[0] in registry)
        and not (query.q or query.subject)
        and connection.features.supports_slicing_ordering_in_compound
    ):
        # PostgreSQL. (SQLite cannot order/limit inside UNION branches: it takes the
        # single-statement path below, fine at embedded sizes.) A text search is selective
        # through its trigram index, so it also takes the single-statement path. One type
        # is a merge of one branch: the same rows in the same order as the ORM's
        # ``observed_ts`` order, without building and compiling a queryset per request
        # (docs/performance.md, "One type by freshness without the ORM").
        key_name = "_key"
        if cursor is not None and len(query.types) == 1:
            cursor = _freshness_cursor(cursor, query.types[0], as_of.timestamp())
        shared = _shared_where(query, viewer, as_of)  # resolves the sources: once
        if product_settings().query_one_statement and _few_matches(query, shared):
            rows = _one_statement_by_freshness(query, viewer, as_of, cursor, descending, shared)
        else:
            rows = _merge_by_freshness(query, viewer, as_of, cursor, descending, shared)
        key_index = len(ITEM_COLUMNS)
    elif (
        sort_name == "freshness"
        and query.q
        and len(query.types) != 1
        and query.min_freshness <= 0
        and connection.vendor == "postgresql"
        and product_settings().query_one_statement
    ):
        # Free text by freshness (Q4): one statement written by hand around the memoised
        # shared WHERE, not built through the ORM per request (docs/performance.md,
        # "Free text at 1M (2026-12-02)").
        key_name = "_key"
        rows = _one_statement_by_freshness(query, viewer, as_of, cursor, descending)
        key_index = len(ITEM_COLUMNS)
    else:
        qs = build_queryset(query, viewer, as_of)
        if sort_name == "freshness":
            if len(query.types) == 1:
                key_name = "observed_ts"  # one decay: freshness order is observed order
            else:
                qs = qs.annotate(_key=_freshness_key(query.types, as_of.timestamp()))
                key_name = "_key"
        if cursor is not None:
            key_value = cursor.key
            if key_name in ("created_at", "observed_at"):
                key_value = datetime.fromisoformat(str(cursor.key))
            bound = None if key_name == "_key" else (key_name, key_value)
            qs = _after_cursor(qs, key_name, key_value, cursor.id, descending, bound)
        order = [f"-{key_name}", "-id"] if descending else [key_name, "id"]
        # Tuples of the columns the answer shows, not model instances (docs/performance.md).
        extra = () if key_name in ITEM_COLUMNS else (key_name,)
        key_index = ITEM_COLUMNS.index(key_name) if not extra else len(ITEM_COLUMNS)
        rows = list(qs.order_by(*order).values_list(*ITEM_COLUMNS, *extra)[: query.limit + 1])
    has_more = len(rows) > query.limit
    rows = rows[: query.limit]
    next_cursor = None
    if has_more and rows:
        last = rows[-1]
        key = last[key_index]
        if isinstance(key, datetime):
            key = key.isoformat()
        next_cursor = Cursor(key=key, id=last[0], as_of=as_of.timestamp()).encode()
    width = len(ITEM_COLUMNS)
    return {
        "results": [item_dict(row[:width], now) for row in rows],
        "next": next_cursor,
        "as_of": as_of.isoformat(),
    }


# ln(freshness) is at most ~0 (an item observed in the future by a clock's skew at most);
# an ``observed_ts`` is a time since 1970. A cursor whose key is above this is one the ORM's
# one-type path gave before one type took the merge: continued, not restarted.
_TIMESTAMP_KEYS_ABOVE = 1e6


def _freshness_cursor(cursor: Cursor, knowledge_type: str, as_of_ts: float) -> Cursor:
    """``cursor`` of a one-type query by freshness with its key as the merge's ln(freshness)
    at ``as_of_ts`` (the cursor's, as ``run_query`` reads it): the number PostgreSQL
    computes for the row the page stopped at, so the next page starts after that row."""
    key = float(cursor.key)
    if key <= _TIMESTAMP_KEYS_ABOVE:
        return cursor
    inv = 1.0 / registry.decay_of(knowledge_type)
    return dataclasses.replace(cursor, key=(key - as_of_ts) * inv)


def cache_keys_read(query: KnowledgeQuery) -> list[str]:
    """The shared-cache keys ``run_query_cached`` reads before the page's own key (the type
    tokens and the marks' keys): a request may read them ahead in its first round trip
    (knowledge/limits.py ``count_request``) and pass them as ``prefetched``."""
    return [*knowledge_cache.token_keys(query.types), *item_hooks.cache_keys()]


def run_query_cached(
    query: KnowledgeQuery,
    viewer: Worker | None,
    prefetched: dict | None = None,
    slot: str | None = None,
) -> tuple[dict, bool]:
    """``run_query`` through the query cache (see knowledge/cache.py): (result, hit)."""
    page = cached_page(query, viewer, prefetched, slot)
    return page.as_dict(), page.hit


def cached_page(
    query: KnowledgeQuery,
    viewer: Worker | None,
    prefetched: dict | None = None,
    slot: str | None = None,
) -> Page:
    """``run_query`` through the query cache (see knowledge/cache.py).

    Writes invalidate by type (generation tokens). Time is the other thing that changes a
    result: an item's freshness falls continuously, so a cached result records when its
    first item will fall below ``min_freshness``; after that it counts as a miss and is
    recomputed (and cached again). The freshness of every item is recomputed on each hit.

    A cached page is stored as its JSON bytes (orjson) cut at each item's freshness (the
    last key of an item), with each item's ``observed_ts`` and decay, and what the marks of
    other apps read (id, type, claim): a hit is answered by joining the pieces with the
    current freshness values and marks (``Page.as_bytes``), with no decoding or encoding of
    the items; ``Page.as_dict`` decodes the bytes (C) for callers that want the dict.
    ``prefetched``: the keys of ``cache_keys_read``, if the request read them already;
    ``slot``: the page slot the result is kept in (``knowledge.cache.cached_query_reading``).
    """
    if not knowledge_cache.enabled():  # no page to keep: neither cut nor clocked
        marks_read = knowledge_cache.read_ahead(item_hooks.cache_keys(), prefetched)
        return Page(hit=False, cached=marks_read, result=run_query(query, viewer))
    params = query.cache_params(viewer.name if viewer else None)
    readable = read_types(viewer) if viewer is not None else None
    if readable is not None:  # a changed read scope must not be answered from the cache
        params["read_types"] = sorted(readable)
    computed: list[dict] = []

    def compute() -> dict:
        result = run_query(query, viewer)
        computed.append(result)
        items = result["results"]
        entry = {
            "valid_until": _valid_until(items, query.min_freshness),
            "clock": [_clock_of(i) for i in items],
        }
        parts = _cut_page(result)
        if parts is None:  # an integer beyond 64 bits in a payload: keep the dict itself
            entry["result"] = result
        else:
            entry["parts"] = parts
            entry["heads"] = [
                {"id": i["id"], "knowledge_type": i["knowledge_type"], "claim": i["claim"]}
                for i in items
            ]
        return entry

    def still_valid(entry: dict) -> bool:
        valid_until = entry.get("valid_until")
        return valid_until is None or timezone.now().timestamp() < valid_until

    entry, hit, cached = knowledge_cache.cached_query_reading(
        params,
        query.types or None,
        compute,
        still_valid,
        item_hooks.cache_keys(),
        prefetched,
        slot,
    )
    if computed:
        return Page(hit=False, cached=cached, result=computed[0])
    # The cache backend unpickles a fresh copy, so it is ours to change.
    now_ts = timezone.now().timestamp()
    freshness = [
        round(math.exp(-max(now_ts - observed_ts, 0.0) / decay), 6)
        for observed_ts, decay in entry["clock"]
    ]
    if "parts" in entry:
        return Page(hit, cached, parts=entry["parts"], heads=entry["heads"], freshness=freshness)
    result = entry["result"]
    for item, value in zip(result["results"], freshness, strict=True):
        item["freshness"] = value
    return Page(hit, cached, result=result)


#: The shape of a cached page (``cached_page``), part of every result key.
PAGE_FORMAT = 2
# Stands for each item's freshness while a page is cut (``_cut_page``); random per process,
# so no payload can hold it (and a page whose bytes do not cut cleanly is kept as a dict).
_CUT = secrets.token_hex(12)
_CUT_BYTES = f'"{_CUT}"'.encode()


def _cut_page(result: dict) -> list[bytes] | None:
    """``result``'s JSON bytes cut around each item's freshness value: ``parts[i]`` ends just
    before item ``i``'s freshness, ``parts[i + 1]`` starts just after it (with the item's
    closing brace, freshness being an item's last key). None if orjson cannot encode it."""
    items = result["results"]
    try:
        body = orjson.dumps({**result, "results": [{**i, "freshness": _CUT} for i in items]})
    except TypeError:
        return None
    parts = body.split(_CUT_BYTES)
    return parts if len(parts) == len(items) + 1 else None


@dataclass
class Page:
    """One page of a query as ``cached_page`` found or computed it, with the current marks of
    other apps (contested items: current, never cached, as conflicts move)."""

    hit: bool
    cached: dict | None  # the marks' cache keys, read with the type tokens
    result: dict | None = None  # a computed page, or one cached as a dict
    parts: list[bytes] | None = None  # a cached page's bytes (see ``_cut_page``)
    heads: list[dict] | None = None  # id, type and claim of its items (what marks read)
    freshness: list[float] | None = None  # each item's freshness now

    def as_dict(self) -> dict:
        """``{"results", "next", "as_of"}``, the items with their freshness and marks."""
        if self.result is None:
            result = orjson.loads(b"0".join(self.parts))
            for item, value in zip(result["results"], self.freshness, strict=True):
                item["freshness"] = value
        else:
            result = self.result
        result["results"] = item_hooks.mark_items(result["results"], self.cached)
        return result

    def as_bytes(self) -> bytes | None:
        """``{**as_dict(), "cached": hit}`` as orjson writes it, joined from the cached
        pieces without decoding them; None when the page is not held as pieces (the caller
        renders ``as_dict()``)."""
        if self.parts is None:
            return None
        marks = item_hooks.item_marks(self.heads, self.cached)
        values = orjson.dumps(self.freshness)[1:-1].split(b",") if self.freshness else []
        out = [self.parts[0]]
        encoded: dict = {}
        for i, value in enumerate(values):
            out.append(value)
            if marks is not None:
                mark = marks[i]
                # Most items share one mark object (not contested); ``marks`` holds every
                # mark for the loop, so an id is never reused within it.
                key = id(mark)
                if key not in encoded:
                    fields = orjson.dumps(mark)[1:-1]
                    encoded[key] = b"," + fields if fields else b""
                out.append(encoded[key])
            out.append(self.parts[i + 1])
        body = b"".join(out)
        # The page's closing brace: the "cached" flag goes last, as ``{**page, "cached": ...}``.
        return body[:-1] + (b',"cached":true}' if self.hit else b',"cached":false}')


def _clock_of(item: dict) -> tuple[float, float]:
    """(observed_ts, decay seconds) of an item dict: what its freshness depends on."""
    observed = datetime.fromisoformat(item["observed_at"]).timestamp()
    return observed, registry.decay_of(item["knowledge_type"])


def _valid_until(items: list[dict], min_freshness: float) -> float | None:
    """Epoch seconds when the first item of ``items`` drops below ``min_freshness``."""
    if min_freshness <= 0 or not items:
        return None
    return min(
        observed + decay * -math.log(min_freshness)
        for observed, decay in (_clock_of(i) for i in items)
    )


def common_queries() -> list[tuple[KnowledgeQuery, Worker | None]]:
    """The queries ``manage.py warm_cache`` runs: each type's default page (as people and
    the dashboard ask for it: ``GET query?types=<type>``) and each active worker's relevant
    knowledge (``GET query?types=<its interests>`` with its token)."""
    out: list[tuple[KnowledgeQuery, Worker | None]] = [
        (KnowledgeQuery(types=[name]), None) for name in registry.names()
    ]
    for worker in Worker.objects.filter(is_active=True).order_by("name"):
        interests = sorted(registry.interests_of(worker.name))
        if interests:
            out.append((KnowledgeQuery(types=interests), worker))
    return out
