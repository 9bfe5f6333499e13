import json

from django.contrib import admin, messages
from django.utils.html import format_html

from identity.actions import do_rotate_token
from identity.models import Worker, WorkerScope


class WorkerScopeInline(admin.StackedInline):
    """Write / read scopes by type (docs/security.md, "Scopes"); empty = scope_mode's default."""

    model = WorkerScope
    can_delete = True
    extra = 0
    max_num = 1
    fields = ("write_types", "read_types", "updated_at")
    readonly_fields = ("updated_at",)


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "kind",
        "is_active",
        "trust_pin",
        "broadcast_count",
        "received_count",
        "last_seen_at",
    )
    list_filter = ("kind", "is_active")
    search_fields = ("name", "description")
    readonly_fields = (
        "token_prefix",
        "broadcast_count",
        "received_count",
        "created_at",
        "last_seen_at",
        "reported_state",
    )
    fields = ("name", "kind", "description", "is_active", "trust_pin", *readonly_fields)
    actions = ["rotate_tokens"]
    inlines = [WorkerScopeInline]

    @admin.display(description="state (reported by the worker)")
    def reported_state(self, obj):
        """The worker's own status document, formatted and read-only: the worker writes it
        with every heartbeat (PUT state/<worker>); ``Clear state`` is the API's."""
        if not obj.state:
            return "–"
        text = json.dumps(obj.state, indent=2, sort_keys=True, default=str)
        return format_html('<pre class="worker-state">{}</pre>', text)

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # the scope is set once it exists

    def save_model(self, request, obj, form, change):
        if not change:
            token = obj.set_token()
            super().save_model(request, obj, form, change)
            self.message_user(
                request, f"Token for {obj.name} (shown once): {token}", level=messages.WARNING
            )
        else:
            super().save_model(request, obj, form, change)

    @admin.action(description="Rotate tokens (new tokens are shown once)")
    def rotate_tokens(self, request, queryset):
        for worker in queryset:
            token = do_rotate_token(worker)
            self.message_user(
                request, f"New token for {worker.name}: {token}", level=messages.WARNING
            )
