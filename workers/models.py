from __future__ import annotations

from django.db import models


class Project(models.Model):
    """A git checkout the built-in workers work on (``run_worker --repo PATH`` registers it)."""

    name = models.CharField(max_length=100, unique=True)
    path = models.CharField(
        max_length=1000, unique=True, help_text="Absolute path of the checkout."
    )
    last_analysed_commit = models.CharField(max_length=40, blank=True)
    last_analysed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
