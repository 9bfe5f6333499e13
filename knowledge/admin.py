from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connection
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from config.product import product_settings
from knowledge import actions
from knowledge.choices import Verdict
from knowledge.models import (
    Event,
    InboxCursor,
    KnowledgeItem,
    LogState,
    Subscription,
    ValidationRecord,
)
from knowledge.registry import registry
from knowledge.search import estimated_rows


class ValidationInline(admin.TabularInline):
    model = ValidationRecord
    extra = 0
    fields = ("validator", "user", "verdict", "note", "created_at")
    readonly_fields = fields
    can_delete = False


# The item list at 1,000,000 items (docs/performance.md, "The admin's item list at 1M"):
# every page load counted the table, listed its distinct types and its distinct months
# (~0.5 s of database time); none of the three reads the table now. The event list (as
# many rows as broadcasts) gets the same type filter and count.


class KnowledgeTypeFilter(admin.SimpleListFilter):
    """The registered types, from the registry: not a ``DISTINCT`` over the item table per
    page. Same parameter as the field's filter (``?knowledge_type=<name>``, which the
    dashboard links to); an item of a type no longer registered is still found by it."""

    title = "knowledge type"
    parameter_name = "knowledge_type"

    def lookups(self, request, model_admin):
        return [(name, name) for name in registry.names()]

    def queryset(self, request, queryset):
        return queryset.filter(knowledge_type=self.value()) if self.value() else queryset


class EstimatedCountPaginator(Paginator):
    """Counts an unfiltered list (items, events: the tables that grow with the fleet) by the
    planner's estimate from ``admin_estimated_count_rows`` rows on (PostgreSQL); any filtered
    or searched list, and a small table, exactly."""

    @cached_property
    def count(self) -> int:
        threshold = product_settings().admin_estimated_count_rows
        query = getattr(self.object_list, "query", None)
        if threshold > 0 and connection.vendor == "postgresql" and query is not None:
            if not query.where:
                # One catalog row, read per page (not the per-minute memo of the search).
                estimate = estimated_rows(query.model._meta.db_table, max_age=0)
                if estimate >= threshold:
                    return int(estimate)
        return super().count


@admin.register(KnowledgeItem)
class KnowledgeItemAdmin(admin.ModelAdmin):
    # What a reviewer compares first (claim, confidence, freshness), narrow enough for 1366 px.
    list_display = (
        "id",
        "claim",
        "confidence_display",
        "freshness_display",
        "knowledge_type",
        "source",
        "subject_display",
        "status",
        "created_at",
    )
    ordering = ("-id",)
    list_filter = (
        KnowledgeTypeFilter,
        "status",
        "validation_status",
        "urgency",
        "source",
        "created_at",
    )
    search_fields = ("subject", "claim", "=id")
    list_select_related = ("source",)
    # No date_hierarchy: its year/month links are a DISTINCT over the whole table on every
    # page (0.26-0.46 s at 1M); the created_at filter offers today / 7 days / month / year.
    paginator = EstimatedCountPaginator
    readonly_fields = (
        "knowledge_type",
        "source",
        "subject",
        "subject_text",
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
        "freshness_display",
        "links",
    )
    exclude = ("observed_ts", "is_targeted")
    inlines = [ValidationInline]
    actions = ["confirm", "dispute"]
    show_full_result_count = False  # no COUNT(*) over a million rows per page

    @admin.display(description="confidence", ordering="confidence")
    def confidence_display(self, obj):
        return f"{obj.confidence:.2f}"

    @admin.display(description="subject", ordering="subject")
    def subject_display(self, obj):
        text = obj.subject if len(obj.subject) <= 48 else obj.subject[:47] + "…"
        return format_html('<span title="{}">{}</span>', obj.subject, text)

    @admin.display(description="conflicts and events")
    def links(self, obj):
        # Conflicts plug in from above (their M2M's reverse name); no import of that app.
        conflicts = getattr(obj, "conflicts", None)
        parts = [
            format_html('<a href="{}">conflict #{}</a>', reverse("conflicts:detail", args=[pk]), pk)
            for pk in (conflicts.values_list("pk", flat=True) if conflicts is not None else [])
        ]
        events = reverse("admin:knowledge_event_changelist") + f"?item_id={obj.pk}"
        parts.append(format_html('<a href="{}">events of this item</a>', events))
        return format_html_join(" · ", "{}", ((p,) for p in parts))

    @admin.display(description="freshness")
    def freshness_display(self, obj):
        value = obj.freshness()
        cls = "ok" if value >= 0.5 else ("warn" if value >= 0.1 else "bad")
        return format_html('<span class="fresh-{}">{}</span>', cls, f"{value:.3f}")

    def has_add_permission(self, request):
        return False  # knowledge comes from workers

    def has_change_permission(self, request, obj=None):
        return False  # every field is read-only: a view page; confirm/dispute are actions

    def has_delete_permission(self, request, obj=None):
        return False  # nothing is deleted: losers are superseded

    def _validate(self, request, queryset, verdict):
        for item in queryset:
            actions.do_validate(item, verdict, user=request.user, note="admin action")
        self.message_user(
            request, f"{queryset.count()} item(s) marked {verdict}.", messages.SUCCESS
        )

    @admin.action(description="Confirm selected items")
    def confirm(self, request, queryset):
        self._validate(request, queryset, Verdict.CONFIRMED)

    @admin.action(description="Dispute selected items")
    def dispute(self, request, queryset):
        self._validate(request, queryset, Verdict.DISPUTED)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = (
        "seq",
        "kind",
        "knowledge_type",
        "source",
        "item_link",
        "conflict_links",
        "targets",
        "created_at",
    )
    list_filter = ("kind", KnowledgeTypeFilter, "created_at")
    search_fields = ("=seq", "=item_id", "source")
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ("-seq",)  # newest first

    @admin.display(description="conflicts")
    def conflict_links(self, obj):
        # Conflict events carry the conflict; a broadcast the conflicts it opened (the review
        # pages are linked by URL name: nothing of that app is imported).
        data = obj.data or {}
        ids = list(data.get("conflicts") or [])
        if isinstance(data.get("conflict"), dict) and data["conflict"].get("id"):
            ids.append(data["conflict"]["id"])
        if not ids:
            return "-"
        return format_html_join(
            ", ",
            '<a href="{}">#{}</a>',
            ((reverse("conflicts:detail", args=[pk]), pk) for pk in ids if isinstance(pk, int)),
        )

    @admin.display(description="item", ordering="item_id")
    def item_link(self, obj):
        if not obj.item_id:
            return "-"
        url = reverse("admin:knowledge_knowledgeitem_change", args=[obj.item_id])
        return format_html('<a href="{}">#{}</a>', url, obj.item_id)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(InboxCursor)
class InboxCursorAdmin(admin.ModelAdmin):
    list_display = ("worker", "position", "delivered", "acked_at", "epoch")
    readonly_fields = ("worker", "position", "delivered", "acked_at", "epoch")

    def has_change_permission(self, request, obj=None):
        return False  # moved by acks only


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = (
        "worker",
        "types",
        "muted_types",
        "sources",
        "events",
        "min_urgency",
        "updated_at",
    )


@admin.register(LogState)
class LogStateAdmin(admin.ModelAdmin):
    list_display = ("epoch", "reset_at", "pruned_through")
    readonly_fields = ("epoch", "reset_at", "pruned_through")

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False


@admin.register(ValidationRecord)
class ValidationRecordAdmin(admin.ModelAdmin):
    list_display = ("item", "validator", "user", "verdict", "created_at")
    list_filter = ("verdict",)
    raw_id_fields = ("item",)
