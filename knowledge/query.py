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
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone as dt_timezone

from django.db.models import Case, F, FloatField, Q, Value, When
from django.utils import timezone

from knowledge import cache as knowledge_cache
from knowledge.choices import ItemStatus, Urgency
from knowledge.models import KnowledgeItem, KnowledgeTarget
from knowledge.registry import registry
from workers.models import Worker

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
    sort: str = DEFAULT_SORT
    limit: int = 50
    cursor: str | None = None

    def cache_params(self, viewer: str | None) -> dict:
        params = asdict(self)
        params["viewer"] = viewer
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
        try:
            padded = token + "=" * (-len(token) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded.encode()))
            return cls(key=data["k"], id=int(data["i"]), as_of=float(data["a"]))
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise QueryError("cursor", "is not a valid cursor (pass back the 'next' value)") from None


def _sort_spec(sort: str) -> tuple[str, bool]:
    descending = sort.startswith("-")
    name = sort.lstrip("-+")
    if name not in SORTS:
        raise QueryError("sort", f"must be one of {sorted(SORTS)} with an optional '-' prefix")
    return name, descending


def build_queryset(query: KnowledgeQuery, viewer: Worker | None, as_of: datetime):
    qs = KnowledgeItem.objects.all()
    if viewer is not None:
        qs = qs.visible_to(viewer)
    if query.types:
        qs = qs.filter(knowledge_type__in=query.types)
    if query.sources:
        qs = qs.filter(source__name__in=query.sources)
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
        qs = qs.filter(subject=query.subject)
    if query.q:
        qs = qs.filter(subject__icontains=query.q)
    if query.min_freshness > 0:
        qs = qs.fresh(query.min_freshness, query.types or None, now=as_of)
    return qs


def _freshness_key(types: list[str], as_of_ts: float):
    """ln(freshness) at as_of: -(as_of - observed_ts) / decay(type)."""
    names = types or registry.names()
    inv_decay = Case(
        *[When(knowledge_type=n, then=Value(1.0 / registry.decay_of(n))) for n in names],
        default=Value(1.0 / registry.decay_of("")),
        output_field=FloatField(),
    )
    return (F("observed_ts") - Value(as_of_ts)) * inv_decay


def run_query(query: KnowledgeQuery, viewer: Worker | None) -> dict:
    """Execute a query; returns ``{"results": [...], "next": cursor|None, "as_of": iso}``."""
    sort_name, descending = _sort_spec(query.sort)
    cursor = Cursor.decode(query.cursor) if query.cursor else None
    now = timezone.now()
    as_of = datetime.fromtimestamp(cursor.as_of, tz=dt_timezone.utc) if cursor else now
    qs = build_queryset(query, viewer, as_of).select_related("source")

    key_name = sort_name
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
        if descending:
            qs = qs.filter(Q(**{f"{key_name}__lt": key_value}) | Q(**{key_name: key_value, "id__lt": cursor.id}))
        else:
            qs = qs.filter(Q(**{f"{key_name}__gt": key_value}) | Q(**{key_name: key_value, "id__gt": cursor.id}))
    order = [f"-{key_name}", "-id"] if descending else [key_name, "id"]
    rows = list(qs.order_by(*order)[: query.limit + 1])
    has_more = len(rows) > query.limit
    rows = rows[: query.limit]
    next_cursor = None
    if has_more and rows:
        last = rows[-1]
        key = getattr(last, key_name)
        if isinstance(key, datetime):
            key = key.isoformat()
        next_cursor = Cursor(key=key, id=last.pk, as_of=as_of.timestamp()).encode()
    return {
        "results": [row.as_dict(now) for row in rows],
        "next": next_cursor,
        "as_of": as_of.isoformat(),
    }


def run_query_cached(query: KnowledgeQuery, viewer: Worker | None) -> tuple[dict, bool]:
    """``run_query`` through the versioned query cache (see knowledge/cache.py)."""
    params = query.cache_params(viewer.name if viewer else None)
    return knowledge_cache.cached_query(params, query.types or None, lambda: run_query(query, viewer))


def urgency_from_label(label: str, field_name: str = "urgency") -> int:
    try:
        return int(Urgency.from_label(label))
    except ValueError:
        raise QueryError(field_name, f"{label!r} is not one of {Urgency.labels_list()}") from None

