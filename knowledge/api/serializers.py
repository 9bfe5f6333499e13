from __future__ import annotations

import json
import math
import sys
from datetime import timedelta

from django.utils import timezone
from rest_framework import serializers

from config.product import product_settings
from identity.models import Worker
from knowledge.actions import BroadcastInput
from knowledge.api.parsers import find_json_problem
from knowledge.choices import EventKind, ItemStatus, Urgency, ValidationStatus, Verdict
from knowledge.query import MAX_ID, SORTS, KnowledgeQuery
from knowledge.registry import PayloadError, registry

URGENCY_LABELS = Urgency.labels_list()
# Ids and seqs are 64-bit: a larger number is a 400 here, not an overflow in the database.
ROW_ID_MAX = MAX_ID
SORT_CHOICES = [*SORTS, *(f"-{s}" for s in SORTS)]


def contains_nul(value) -> bool:
    """True if any string or key in a JSON value holds a NUL (PostgreSQL cannot store it).
    Iterative: a deeply nested value must not exhaust the recursion limit."""
    return find_json_problem(value, sys.maxsize, nul_ok=False) is not None


class FiniteFloatField(serializers.FloatField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("invalid")
        return value


class ItemSerializer(serializers.Serializer):
    """The shape of an item in every response (documentation; items render via as_dict)."""

    id = serializers.IntegerField()
    knowledge_type = serializers.CharField()
    source = serializers.CharField()
    subject = serializers.CharField(help_text="as sent (case kept); matched case-insensitively")
    claim = serializers.CharField()
    payload = serializers.JSONField()
    confidence = serializers.FloatField()
    urgency = serializers.ChoiceField(choices=URGENCY_LABELS)
    targets = serializers.ListField(child=serializers.CharField())
    status = serializers.ChoiceField(choices=ItemStatus.values)
    validation_status = serializers.ChoiceField(choices=ValidationStatus.values)
    superseded_by = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    observed_at = serializers.DateTimeField()
    refreshed_at = serializers.DateTimeField(allow_null=True)
    refresh_count = serializers.IntegerField()
    freshness = serializers.FloatField(help_text="exp(-age/decay(type)) now, 0..1")
    # Query results and the item detail only (knowledge.item_hooks), hence not required.
    contested = serializers.BooleanField(
        required=False, help_text="in an unsettled conflict (query, item detail)"
    )
    conflict_id = serializers.IntegerField(required=False, allow_null=True)
    claim_probability = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="the engine's current probability that this claim is true",
    )


class BroadcastResultSerializer(serializers.Serializer):
    item = ItemSerializer()
    outcome = serializers.ChoiceField(choices=["created", "refreshed", "revised"])
    conflicts = serializers.ListField(child=serializers.IntegerField())
    replayed = serializers.BooleanField()


def names_to_workers(names: list[str], field_name: str) -> list[Worker]:
    if not names:
        return []  # no query (a bulk of 1000 untargeted items would run 1000)
    names = list(dict.fromkeys(names))
    found = {w.name: w for w in Worker.objects.filter(name__in=names, is_active=True)}
    unknown = [n for n in names if n not in found]
    if unknown:
        raise serializers.ValidationError(
            {field_name: [f"unknown worker(s): {', '.join(unknown)}"]}
        )
    return [found[n] for n in names]


class BroadcastSerializer(serializers.Serializer):
    knowledge_type = serializers.CharField(max_length=64)
    payload = serializers.DictField()
    confidence = FiniteFloatField(min_value=0.0, max_value=1.0)
    urgency = serializers.ChoiceField(choices=URGENCY_LABELS, default="normal")
    targets = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, default=list, max_length=100
    )
    observed_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    idempotency_key = serializers.CharField(
        max_length=100, required=False, allow_null=True, default=None
    )
    source = serializers.CharField(
        max_length=64,
        required=False,
        help_text="Optional for workers (must be the token's worker); required for people.",
    )

    def validate_knowledge_type(self, value: str) -> str:
        if value not in registry:
            raise serializers.ValidationError(
                f"unknown knowledge type {value!r}; see GET /api/knowledge/types"
            )
        return value

    def validate_observed_at(self, value):
        if value is None:
            return None
        tolerance = product_settings().clock_skew_tolerance_seconds
        now = timezone.now()
        if value > now + timedelta(seconds=tolerance):
            raise serializers.ValidationError(
                f"is in the future (more than {tolerance}s ahead of the server clock)"
            )
        return min(value, now)

    def validate_payload(self, value: dict) -> dict:
        text = json.dumps(value, default=str)
        # json.dumps writes a NUL (in a string or a key) as the escape \u0000, so a text
        # without that escape has none, and the walk (a bulk's second over every payload)
        # runs only when it may find one.
        if "\\u0000" in text and contains_nul(value):
            raise serializers.ValidationError("null characters (\\u0000) are not allowed")
        size = len(text)
        limit = product_settings().max_payload_bytes
        if size > limit:
            raise serializers.ValidationError(f"is {size} bytes; the limit is {limit}")
        return value

    def validate(self, attrs):
        kt = registry[attrs["knowledge_type"]]
        try:
            kt.validate(attrs["payload"])
        except PayloadError as exc:
            raise serializers.ValidationError({k: [v] for k, v in exc.errors.items()}) from None
        attrs["target_workers"] = names_to_workers(attrs.get("targets") or [], "targets")
        return attrs

    @staticmethod
    def input_from(d: dict) -> BroadcastInput:
        """The action's input from validated data (``run_validation``'s result)."""
        return BroadcastInput(
            knowledge_type=d["knowledge_type"],
            payload=d["payload"],
            confidence=d["confidence"],
            urgency=int(Urgency.from_label(d["urgency"])),
            targets=d["target_workers"],
            observed_at=d.get("observed_at"),
            idempotency_key=d.get("idempotency_key"),
        )


class BulkBroadcastSerializer(serializers.Serializer):
    items = serializers.ListField(child=serializers.DictField(), allow_empty=False)
    source = serializers.CharField(max_length=64, required=False)
    lean = serializers.BooleanField(
        default=False,
        help_text=(
            "true: each stored item's result is its id, outcome, conflicts and replayed flag "
            "instead of the whole item (less to render and to read for large bulks)"
        ),
    )

    def validate_items(self, value):
        limit = product_settings().max_bulk_items
        if len(value) > limit:
            raise serializers.ValidationError(f"at most {limit} items per request")
        return value


class BulkItemResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.IntegerField(help_text="201 created, 200 refreshed/replayed, 4xx rejected")
    result = BroadcastResultSerializer(required=False, help_text="stored (not with lean)")
    id = serializers.IntegerField(required=False, help_text="stored, with lean: the item's id")
    outcome = serializers.CharField(required=False, help_text="stored, with lean")
    conflicts = serializers.ListField(
        child=serializers.IntegerField(), required=False, help_text="stored, with lean"
    )
    replayed = serializers.BooleanField(required=False, help_text="stored, with lean")
    errors = serializers.DictField(required=False)


class BulkResponseSerializer(serializers.Serializer):
    results = BulkItemResultSerializer(many=True)
    stored = serializers.IntegerField()
    rejected = serializers.IntegerField()


class CSVListField(serializers.ListField):
    """A list from JSON, from repeated query parameters, or from comma-separated values."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = [part.strip() for part in data.split(",") if part.strip()]
        elif isinstance(data, list) and all(isinstance(x, str) for x in data):
            flat = []
            for x in data:
                flat.extend(part.strip() for part in x.split(",") if part.strip())
            data = flat
        return super().to_internal_value(data)


class QuerySerializer(serializers.Serializer):
    types = CSVListField(child=serializers.CharField(max_length=64), required=False, max_length=50)
    sources = CSVListField(
        child=serializers.CharField(max_length=64), required=False, max_length=100
    )
    urgency = CSVListField(child=serializers.ChoiceField(choices=URGENCY_LABELS), required=False)
    min_urgency = serializers.ChoiceField(choices=URGENCY_LABELS, required=False)
    min_freshness = FiniteFloatField(min_value=0.0, max_value=1.0, required=False, default=0.0)
    min_confidence = FiniteFloatField(min_value=0.0, max_value=1.0, required=False)
    max_confidence = FiniteFloatField(min_value=0.0, max_value=1.0, required=False)
    status = CSVListField(
        child=serializers.ChoiceField(choices=[*ItemStatus.values, "any"]), required=False
    )
    validation_status = CSVListField(
        child=serializers.ChoiceField(choices=ValidationStatus.values), required=False
    )
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    target = serializers.CharField(max_length=64, required=False)
    subject = serializers.CharField(
        max_length=255, required=False, help_text="exact subject, case-insensitive"
    )
    q = serializers.CharField(max_length=200, required=False, help_text="text contained in subject")
    contested = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="items (not) in an unsettled conflict",
    )
    sort = serializers.ChoiceField(choices=SORT_CHOICES, required=False, default="-freshness")
    limit = serializers.IntegerField(min_value=1, required=False, default=50)
    cursor = serializers.CharField(max_length=500, required=False)

    def validate_types(self, value):
        unknown = [t for t in value if t not in registry]
        if unknown:
            raise serializers.ValidationError(f"unknown knowledge type(s): {', '.join(unknown)}")
        return value

    def validate_limit(self, value):
        cap = product_settings().query_max_limit
        if value > cap:
            raise serializers.ValidationError(f"must be at most {cap}")
        return value

    def validate(self, attrs):
        lo, hi = attrs.get("min_confidence"), attrs.get("max_confidence")
        if lo is not None and hi is not None and lo > hi:
            raise serializers.ValidationError(
                {"min_confidence": ["is greater than max_confidence"]}
            )
        a, b = attrs.get("created_after"), attrs.get("created_before")
        if a and b and a >= b:
            raise serializers.ValidationError({"created_after": ["must be before created_before"]})
        return attrs

    def to_query(self) -> KnowledgeQuery:
        return self.query_from(self.validated_data)

    @staticmethod
    def query_from(d: dict) -> KnowledgeQuery:
        """The query for validated data ``d``."""
        statuses = d.get("status") or [ItemStatus.ACTIVE.value]
        if "any" in statuses:
            statuses = []
        return KnowledgeQuery(
            types=sorted(set(d.get("types", []))),
            sources=sorted(set(d.get("sources", []))),
            urgencies=sorted({int(Urgency.from_label(u)) for u in d.get("urgency", [])}),
            min_urgency=int(Urgency.from_label(d["min_urgency"])) if d.get("min_urgency") else None,
            min_freshness=d.get("min_freshness", 0.0),
            min_confidence=d.get("min_confidence"),
            max_confidence=d.get("max_confidence"),
            statuses=sorted(set(statuses)),
            validation_statuses=sorted(set(d.get("validation_status", []))),
            created_after=d.get("created_after"),
            created_before=d.get("created_before"),
            target=d.get("target"),
            subject=d.get("subject"),
            q=d.get("q"),
            contested=d.get("contested"),
            sort=d.get("sort", "-freshness"),
            limit=d.get("limit", 50),
            cursor=d.get("cursor"),
        )


class QueryResponseSerializer(serializers.Serializer):
    results = ItemSerializer(many=True)
    next = serializers.CharField(allow_null=True)
    as_of = serializers.DateTimeField()
    cached = serializers.BooleanField()


class EventMessageSerializer(serializers.Serializer):
    type = serializers.CharField(default="event")
    seq = serializers.IntegerField()
    epoch = serializers.CharField()
    event = serializers.ChoiceField(choices=EventKind.values)
    created_at = serializers.DateTimeField()
    data = serializers.JSONField()


class EventsQuerySerializer(serializers.Serializer):
    since = serializers.IntegerField(
        min_value=0, max_value=ROW_ID_MAX, required=False, allow_null=True
    )
    epoch = serializers.CharField(max_length=64, required=False)
    wait = FiniteFloatField(min_value=0, required=False, default=0)
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=500)
    types = CSVListField(child=serializers.CharField(max_length=64), required=False)
    sources = CSVListField(child=serializers.CharField(max_length=64), required=False)
    events = CSVListField(child=serializers.ChoiceField(choices=EventKind.values), required=False)
    standing = serializers.BooleanField(
        required=False,
        default=False,
        help_text="use the worker's standing subscription (POST subscribe) instead of list filters",
    )

    def validate_types(self, value):
        unknown = [t for t in value if t not in registry]
        if unknown:
            raise serializers.ValidationError(f"unknown knowledge type(s): {', '.join(unknown)}")
        return value


class EventsResponseSerializer(serializers.Serializer):
    epoch = serializers.CharField()
    since = serializers.IntegerField()
    recovered = serializers.BooleanField()
    position = serializers.IntegerField(
        help_text="where this answer starts (the resume rule): since, or the top if not recovered"
    )
    top = serializers.IntegerField()
    next = serializers.IntegerField(help_text="pass as since= in the next call")
    results = EventMessageSerializer(many=True)


class InboxResponseSerializer(serializers.Serializer):
    epoch = serializers.CharField()
    position = serializers.IntegerField(help_text="the durable cursor before this page")
    ack = serializers.IntegerField(help_text="POST this seq to receive/<worker>/ack to consume")
    top = serializers.IntegerField()
    recovered = serializers.BooleanField()
    results = EventMessageSerializer(many=True)
    next = serializers.IntegerField(allow_null=True)


class AckSerializer(serializers.Serializer):
    seq = serializers.IntegerField(min_value=0, max_value=ROW_ID_MAX)


class ValidateSerializer(serializers.Serializer):
    item = serializers.IntegerField(min_value=1, max_value=ROW_ID_MAX)
    verdict = serializers.ChoiceField(choices=Verdict.values)
    note = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class SubscriptionSerializer(serializers.Serializer):
    worker = serializers.CharField(
        max_length=64,
        required=False,
        help_text="Defaults to the token's worker; required for people.",
    )
    types = CSVListField(child=serializers.CharField(max_length=64), required=False, default=list)
    sources = CSVListField(child=serializers.CharField(max_length=64), required=False, default=list)
    events = CSVListField(
        child=serializers.ChoiceField(choices=EventKind.values), required=False, default=list
    )
    min_urgency = serializers.ChoiceField(choices=URGENCY_LABELS, required=False)


class SubscriptionOutSerializer(serializers.Serializer):
    worker = serializers.CharField()
    types = serializers.ListField(child=serializers.CharField())
    muted_types = serializers.ListField(child=serializers.CharField())
    sources = serializers.ListField(child=serializers.CharField())
    events = serializers.ListField(child=serializers.CharField())
    min_urgency = serializers.CharField()
    effective_types = serializers.ListField(child=serializers.CharField())


class StateSerializer(serializers.Serializer):
    state = serializers.DictField()

    def validate_state(self, value):
        if contains_nul(value):
            raise serializers.ValidationError("null characters (\\u0000) are not allowed")
        return value
