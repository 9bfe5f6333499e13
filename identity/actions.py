"""Writes on worker identities."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from identity.choices import BUILTIN_WORKERS, WorkerKind
from identity.models import Worker

LAST_SEEN_RESOLUTION = timedelta(seconds=30)


def do_create_worker(
    name: str, kind: str | None = None, description: str = ""
) -> tuple[Worker, str]:
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
