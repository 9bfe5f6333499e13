"""Writes on worker identities."""

from __future__ import annotations

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from workers.choices import BUILTIN_WORKERS, WorkerKind
from workers.models import Worker

LAST_SEEN_RESOLUTION = timedelta(seconds=30)


def do_create_worker(name: str, kind: str | None = None, description: str = "") -> tuple[Worker, str]:
    """Create a worker and return it with its token (shown once, only the hash is stored)."""
    if kind is None:
        kind = name if name in BUILTIN_WORKERS else WorkerKind.CUSTOM
    worker = Worker(name=name, kind=kind, description=description)
    token = worker.set_token()
    worker.full_clean()
    worker.save()
    return worker, token


def do_rotate_token(worker: Worker) -> str:
    token = worker.set_token()
    worker.save(update_fields=["token_hash", "token_prefix"])
    return token


def do_ensure_builtin_workers() -> list[tuple[Worker, str | None]]:
    """Create the five built-in workers that are missing; return (worker, token or None)."""
    out = []
    with transaction.atomic():
        for name in BUILTIN_WORKERS:
            worker = Worker.objects.filter(name=name).first()
            if worker is None:
                worker, token = do_create_worker(name, name, f"Built-in {name} worker")
                out.append((worker, token))
            else:
                out.append((worker, None))
    return out


def touch_last_seen(worker: Worker) -> bool:
    """Record that the worker was seen; at most one write per 30 s per worker.
    Returns True if it wrote."""
    now = timezone.now()
    if worker.last_seen_at and now - worker.last_seen_at < LAST_SEEN_RESOLUTION:
        return False
    Worker.objects.filter(pk=worker.pk).update(last_seen_at=now)
    worker.last_seen_at = now
    return True


def do_register_project(path: str, name: str | None = None):
    """The Project for the checkout at ``path`` (resolved), created on first use.

    The name defaults to the directory's name, suffixed with ``-2``, ``-3``... when taken.
    """
    from pathlib import Path

    from workers.models import Project

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
    from workers.models import Project

    Project.objects.filter(pk=project.pk).update(last_analysed_commit=sha, last_analysed_at=timezone.now())
    project.last_analysed_commit = sha
