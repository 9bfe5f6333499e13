"""Alert rules in the admin: thresholds are edited here; state and flips are read-only
(only the alert checker writes them)."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from dashboard.models import AlertFlip, AlertRule


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "level",
        "state",
        "threshold",
        "unit",
        "min_samples",
        "for_seconds",
        "enabled",
        "value",
        "checked_at",
    )
    list_filter = ("state", "level", "enabled")
    fields = ("name", *AlertRule.CONFIG_FIELDS, *AlertRule.STATE_FIELDS, "history_link")
    readonly_fields = ("name", *AlertRule.STATE_FIELDS, "history_link")

    @admin.display(description="history")
    def history_link(self, obj):
        return format_html('<a href="{}">State and history</a>', reverse("dashboard:alerts"))

    def has_add_permission(self, request):
        return False  # rules are code (dashboard/alerts.py); their thresholds are data

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        # Only the configuration: the checker may have moved the state since the form loaded.
        obj.save(update_fields=AlertRule.CONFIG_FIELDS)


@admin.register(AlertFlip)
class AlertFlipAdmin(admin.ModelAdmin):
    list_display = ("created_at", "rule", "old_state", "new_state", "value", "threshold", "message")
    list_filter = ("rule", "new_state")
    list_select_related = ("rule",)
    ordering = ("-id",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # immutable history: a view page without a save button

    def has_delete_permission(self, request, obj=None):
        return False
