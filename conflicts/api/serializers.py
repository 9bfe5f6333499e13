from __future__ import annotations

from rest_framework import serializers

from conflicts.choices import Decision
from conflicts.models import Conflict, Resolution
from knowledge.api.serializers import ROW_ID_MAX


class ResolutionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Resolution
        fields = [
            "id",
            "strategy",
            "decision",
            "actor",
            "actor_name",
            "winner_claim",
            "winner_item_ids",
            "superseded_item_ids",
            "proposal",
            "proposal_agreed",
            "inputs",
            "trust_updates",
            "note",
            "created_at",
        ]


class ConflictSerializer(serializers.ModelSerializer):
    """A conflict in lists (``items`` = ids; the detail adds evidence and history)."""

    flagged_by = serializers.CharField(source="flagged_by.name", default=None, allow_null=True)
    item_ids = serializers.SerializerMethodField()
    workers = serializers.SerializerMethodField()

    class Meta:
        model = Conflict
        fields = [
            "id",
            "knowledge_type",
            "subject",
            "classification",
            "status",
            "strategy",
            "proposed_claim",
            "margin",
            "threshold",
            "decision",
            "decided_claim",
            "decided_by",
            "note",
            "flagged_by",
            "flag_reason",
            "review_requests",
            "review_requested_at",
            "opened_at",
            "updated_at",
            "resolved_at",
            "version",
            "item_ids",
            "workers",
        ]

    def get_item_ids(self, obj) -> list[int]:
        return [link.item_id for link in obj.links.all()]

    def get_workers(self, obj) -> list[str]:
        return sorted({link.item.source.name for link in obj.links.all()})


class ConflictDetailSerializer(ConflictSerializer):
    proposal = serializers.JSONField()
    items = serializers.SerializerMethodField()
    resolutions = ResolutionSerializer(many=True)

    class Meta(ConflictSerializer.Meta):
        fields = [*ConflictSerializer.Meta.fields, "proposal", "items", "resolutions"]

    def get_items(self, obj) -> list[dict]:
        return self.context["evidence"]


class ResolveSerializer(serializers.Serializer):
    conflict = serializers.IntegerField(min_value=1, max_value=ROW_ID_MAX)
    decision = serializers.ChoiceField(
        choices=[Decision.PICK, Decision.ACCEPT, Decision.REJECT, Decision.DISMISS]
    )
    winner_item = serializers.IntegerField(
        min_value=1, max_value=ROW_ID_MAX, required=False, allow_null=True
    )
    note = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    version = serializers.IntegerField(
        min_value=1,
        max_value=ROW_ID_MAX,
        required=False,
        allow_null=True,
        help_text="the version you reviewed: 409 if it changed",
    )

    def validate(self, attrs):
        if attrs["decision"] == Decision.PICK and not attrs.get("winner_item"):
            raise serializers.ValidationError({"winner_item": ["required when decision is pick"]})
        return attrs


class FlagSerializer(serializers.Serializer):
    items = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ROW_ID_MAX),
        min_length=2,
        max_length=50,
    )
    reason = serializers.CharField(max_length=500, allow_blank=True, default="")


class RequestResolutionSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")
