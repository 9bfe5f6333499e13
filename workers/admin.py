from django.contrib import admin

from workers.models import Project


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "path", "last_analysed_commit", "last_analysed_at")
    search_fields = ("name", "path")
    readonly_fields = ("last_analysed_commit", "last_analysed_at", "created_at")
