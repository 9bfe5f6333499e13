"""The review queue in the Django admin. Decisions go through ``conflicts.actions`` like the
API and the dashboard; the admin never edits a conflict's fields directly."""

import json

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from conflicts import actions
from conflicts.choices import Decision
from conflicts.evidence import conflict_evidence
from conflicts.models import Conflict, Resolution, SourceTrust
from knowledge.errors import ActionError


class ResolutionInline(admin.TabularInline):
    model = Resolution
    extra = 0
    fields = (
        "created_at",
        "decision",
        "actor_name",
        "strategy",
        "winner_claim",
        "superseded_item_ids",
        "proposal_agreed",
        "note",
    )
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Conflict)
class ConflictAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "knowledge_type",
        "subject",
        "classification",
        "status",
        "proposed_claim",
        "margin_display",
        "decided_claim",
        "decided_by_display",
        "opened_at",
    )
    list_filter = ("status", "classification", "knowledge_type", "decision", "opened_at")
    search_fields = ("subject", "proposed_claim", "decided_claim", "=id", "flag_reason")
    date_hierarchy = "opened_at"
    ordering = ("-id",)
    show_full_result_count = False
    readonly_fields = (
        "knowledge_type",
        "subject",
        "classification",
        "status",
        "evidence",
        "strategy",
        "proposed_claim",
        "margin_display",
        "threshold",
        "proposal_display",
        "decision",
        "decided_claim",
        "decided_by_display",
        "note",
        "flagged_by",
        "flag_reason",
        "review_requests",
        "review_requested_at",
        "opened_at",
        "updated_at",
        "resolved_at",
        "version",
        "review_link",
    )
    fields = readonly_fields
    inlines = [ResolutionInline]
    actions = ["accept_proposal", "dismiss"]

    @admin.display(description="margin", ordering="margin")
    def margin_display(self, obj):
        if obj.margin is None:
            return "-"
        return f"{obj.margin:.3f}" + ("" if obj.has_proposal else " (tie: no proposal)")

    @admin.display(description="proposal")
    def proposal_display(self, obj):
        def rounded(value):
            if isinstance(value, float):
                return round(value, 3)
            if isinstance(value, dict):
                return {k: rounded(v) for k, v in value.items()}
            if isinstance(value, list):
                return [rounded(v) for v in value]
            return value

        return format_html("<code>{}</code>", json.dumps(rounded(obj.proposal or {})))

    @admin.display(description="decided by", ordering="decided_by")
    def decided_by_display(self, obj):
        return obj.decided_by_name or "-"

    @admin.display(description="evidence: each item side by side")
    def evidence(self, obj):
        rows = conflict_evidence(obj)
        body = format_html_join(
            "",
            "<tr><td>#{}</td><td>{}</td><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    r["item"]["id"],
                    r["item"]["source"],
                    r["item"]["claim"],
                    f"{r['item']['confidence']:.2f}",
                    f"{r['freshness']:.3f}",
                    f"{r['trust']:.3f}" + (" (pinned)" if r["trust_pinned"] else ""),
                    r["item"]["status"],
                    {True: "won", False: "lost"}.get(r["won"], "-"),
                )
                for r in rows
            ),
        )
        return format_html(
            "<table><tr><th>item</th><th>source</th><th>claim</th><th>confidence</th>"
            "<th>freshness</th><th>source trust</th><th>status</th><th>outcome</th></tr>{}</table>",
            body,
        )

    @admin.display(description="pick a winner")
    def review_link(self, obj):
        url = reverse("conflicts:detail", args=[obj.pk])
        return format_html('<a href="{}">Open in the review page</a>', url)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # a view page (no SAVE buttons): decisions go through the actions

    def has_delete_permission(self, request, obj=None):
        return False

    def _decide(self, request, queryset, decision, action: str, title: str):
        """An intermediate page asks for the note (the history keeps why); then every
        selected conflict goes through ``do_resolve`` like a single decision."""
        note = request.POST.get("note", "").strip()[:2000]
        if request.POST.get("post") != "yes" or not note:
            if request.POST.get("post") == "yes":
                self.message_user(request, "Write a note: the history keeps why.", messages.ERROR)
            return TemplateResponse(
                request,
                "admin/conflicts/conflict/decide_selected.html",
                {
                    **self.admin_site.each_context(request),
                    "title": title,
                    "opts": self.model._meta,
                    "conflicts": queryset.order_by("-pk"),
                    "action": action,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                    "note": note,
                },
            )
        done = 0
        for conflict in queryset.order_by("pk"):
            try:
                actions.do_resolve(conflict.pk, decision, user=request.user, note=note)
                done += 1
            except ActionError as exc:
                self.message_user(
                    request, f"Conflict #{conflict.pk}: {exc.message}", messages.WARNING
                )
        word = "conflict" if done == 1 else "conflicts"
        self.message_user(request, f"{done} {word}: {title.lower()}.", messages.SUCCESS)
        return None

    @admin.action(description="Accept the engine's proposal (asks for a note)")
    def accept_proposal(self, request, queryset):
        return self._decide(
            request, queryset, Decision.ACCEPT, "accept_proposal", "Accept the engine's proposal"
        )

    @admin.action(description="Dismiss: not a real conflict (asks for a note)")
    def dismiss(self, request, queryset):
        return self._decide(request, queryset, Decision.DISMISS, "dismiss", "Dismiss")


@admin.register(Resolution)
class ResolutionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "conflict",
        "decision",
        "actor",
        "actor_name",
        "strategy",
        "winner_claim",
        "proposal_agreed",
        "created_at",
    )
    list_filter = ("decision", "actor", "strategy", "created_at")
    search_fields = ("=conflict__id", "winner_claim", "actor_name")
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # immutable history

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(SourceTrust)
class SourceTrustAdmin(admin.ModelAdmin):
    """Learned trust per (worker, type); an admin may pin it per type (``Worker.trust_pin``
    pins a worker for every type and wins over this)."""

    list_display = (
        "worker",
        "knowledge_type",
        "mean_display",
        "alpha",
        "beta",
        "pinned",
        "wins",
        "losses",
        "updated_at",
    )
    list_filter = ("knowledge_type",)
    search_fields = ("worker__name",)
    list_select_related = ("worker",)
    readonly_fields = ("worker", "knowledge_type", "alpha", "beta", "wins", "losses", "updated_at")
    fields = ("worker", "knowledge_type", "pinned", "alpha", "beta", "wins", "losses", "updated_at")

    @admin.display(description="effective trust")
    def mean_display(self, obj):
        return f"{obj.mean:.3f}"

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        actions.do_pin_trust(obj.worker, obj.knowledge_type, obj.pinned)
