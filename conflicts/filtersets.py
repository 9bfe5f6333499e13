"""One FilterSet for the conflict list: the API and the dashboard queue both use it."""

from __future__ import annotations

from datetime import UTC

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from conflicts.choices import Classification, ConflictStatus
from conflicts.models import Conflict
from knowledge.registry import registry


def _type_choices():
    return [(name, name) for name in registry.names()]


class UTCIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 time normalised to UTC here, so one outside what the database can store
    (year 1 at +14:00) is an invalid value (400), not an overflow in the query (500)."""

    def to_python(self, value):
        moment = super().to_python(value)
        try:
            return moment.astimezone(UTC) if moment is not None else None
        except OverflowError:
            raise forms.ValidationError("is out of range once converted to UTC") from None


class UTCIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """A browser's date-time picker (``<input type=datetime-local>``, no zone: UTC) or any
    ISO 8601 time."""

    field_class = UTCIsoDateTimeField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", forms.DateTimeInput(attrs={"type": "datetime-local"}))
        kwargs.setdefault(
            "error_messages", {"invalid": "Enter a date and time, e.g. 2026-12-01T09:30 (UTC)."}
        )
        super().__init__(*args, **kwargs)


class ConflictFilterSet(django_filters.FilterSet):
    """``status`` and ``classification`` accept several values (``?status=open&status=...``);
    ``worker`` = a worker whose item takes part; ``opened_after`` / ``opened_before`` and
    ``resolved_after`` / ``resolved_before`` are ISO 8601 times; ``q`` searches the subject."""

    status = django_filters.MultipleChoiceFilter(choices=ConflictStatus.choices, label="Status")
    type = django_filters.MultipleChoiceFilter(
        field_name="knowledge_type", choices=_type_choices, label="Knowledge type"
    )
    classification = django_filters.MultipleChoiceFilter(
        choices=Classification.choices, label="Classification"
    )
    worker = django_filters.CharFilter(
        method="filter_worker",
        max_length=64,
        label="Worker involved",
        widget=forms.TextInput(attrs={"placeholder": "worker name"}),
    )
    opened_after = UTCIsoDateTimeFilter(
        field_name="opened_at", lookup_expr="gte", label="Opened after"
    )
    opened_before = UTCIsoDateTimeFilter(
        field_name="opened_at", lookup_expr="lt", label="Opened before"
    )
    resolved_after = UTCIsoDateTimeFilter(
        field_name="resolved_at", lookup_expr="gte", label="Decided after"
    )
    resolved_before = UTCIsoDateTimeFilter(
        field_name="resolved_at", lookup_expr="lt", label="Decided before"
    )
    q = django_filters.CharFilter(
        field_name="subject",
        lookup_expr="icontains",
        max_length=255,
        label="Subject contains",
        widget=forms.TextInput(attrs={"placeholder": "subject contains"}),
    )

    class Meta:
        model = Conflict
        fields: list[str] = []

    def filter_worker(self, queryset, name, value):
        return queryset.involving_worker(value) if value else queryset
