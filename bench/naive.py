"""The naive baseline: what a Django developer writes first.

A ``ModelViewSet`` with django-filter, ``PageNumberPagination`` (and its ``COUNT(*)``), a
``ModelSerializer``, and freshness computed in Python: every matching row is loaded,
filtered by freshness and sorted by it, then one page is served. Mounted only by
``bench.urls`` for the benchmark; it is not part of the product.
"""

from __future__ import annotations

import django_filters
from django.utils import timezone
from rest_framework import serializers, viewsets
from rest_framework.pagination import PageNumberPagination

from identity.permissions import request_worker
from knowledge.choices import Urgency
from knowledge.models import KnowledgeItem


class NaiveItemSerializer(serializers.ModelSerializer):
    source = serializers.CharField(source="source.name")
    urgency = serializers.SerializerMethodField()
    freshness = serializers.SerializerMethodField()

    class Meta:
        model = KnowledgeItem
        fields = [
            "id",
            "knowledge_type",
            "source",
            "subject",
            "claim",
            "payload",
            "confidence",
            "urgency",
            "target_names",
            "status",
            "validation_status",
            "superseded_by",
            "created_at",
            "observed_at",
            "refreshed_at",
            "refresh_count",
            "freshness",
        ]

    def get_urgency(self, obj):
        return Urgency(obj.urgency).label

    def get_freshness(self, obj):
        return round(obj.freshness(), 6)


class CharInFilter(django_filters.BaseInFilter, django_filters.CharFilter):
    pass


class NaiveItemFilterSet(django_filters.FilterSet):
    knowledge_type = CharInFilter(field_name="knowledge_type", lookup_expr="in")
    source = CharInFilter(field_name="source__name", lookup_expr="in")
    urgency = django_filters.NumberFilter(field_name="urgency")
    status = django_filters.CharFilter(field_name="status")
    q = django_filters.CharFilter(field_name="subject", lookup_expr="icontains")

    class Meta:
        model = KnowledgeItem
        fields = ["knowledge_type", "source", "urgency", "status", "q"]


class NaivePagination(PageNumberPagination):
    page_size = 50


class NaiveItemViewSet(viewsets.ModelViewSet):
    serializer_class = NaiveItemSerializer
    filterset_class = NaiveItemFilterSet
    pagination_class = NaivePagination

    def get_queryset(self):
        qs = KnowledgeItem.objects.select_related("source").order_by("-observed_at", "-id")
        me = request_worker(self.request)
        return qs.visible_to(me) if me is not None else qs

    def list(self, request, *args, **kwargs):
        qs = self.filter_queryset(self.get_queryset())
        min_freshness = float(request.query_params.get("min_freshness", 0) or 0)
        if request.query_params.get("ordering") == "-freshness" or min_freshness > 0:
            now = timezone.now()
            scored = [(item.freshness(now), item) for item in qs]
            rows = [item for f, item in sorted(scored, key=lambda p: -p[0]) if f >= min_freshness]
        else:
            rows = qs
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)
