"""Writes on the projects (git checkouts) the built-in workers work on."""

from __future__ import annotations

from pathlib import Path

from django.db import IntegrityError, transaction
from django.utils import timezone

from workers.models import Project


def do_register_project(path: str, name: str | None = None):
    """The Project for the checkout at ``path`` (resolved), created on first use.

    The name defaults to the directory's name, suffixed with ``-2``, ``-3``... when taken.
    """
    resolved = str(Path(path).resolve())
    project = Project.objects.filter(path=resolved).first()
    if project is not None:
        return project
    base = name or Path(resolved).name or "project"
    candidate, n = base, 1
    while Project.objects.filter(name=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    try:
        with transaction.atomic():
            return Project.objects.create(name=candidate, path=resolved)
    except IntegrityError:
        # Another process registered it at the same moment (workers starting together).
        project = Project.objects.filter(path=resolved).first()
        if project is None:
            raise
        return project


def do_mark_analysed(project, sha: str) -> None:
    """Record that Analysis finished commit ``sha`` of ``project``."""
    Project.objects.filter(pk=project.pk).update(
        last_analysed_commit=sha, last_analysed_at=timezone.now()
    )
    project.last_analysed_commit = sha
