from __future__ import annotations

import hashlib
import secrets

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from identity.choices import WorkerKind

TOKEN_PREFIX_LEN = 8


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_cache_key(token_hash: str) -> str:
    return f"kx:tok:{token_hash}"


# The admin's scope lists of a worker, ``(write_types, read_types)``, remembered on the Worker
# object: set when authentication caches the worker (so a request reads its worker and its
# read scope in one cache lookup), read by knowledge/scopes.py.
SCOPE_MEMO = "_kx_scope"


def remember_scope(worker: Worker) -> Worker:
    """``worker`` with its scope lists (None where no admin set one) remembered on it."""
    row = WorkerScope.objects.filter(worker_id=worker.pk).first()
    setattr(worker, SCOPE_MEMO, (row.write_types, row.read_types) if row else (None, None))
    return worker


def new_token() -> str:
    return "kx_" + secrets.token_urlsafe(32)


class WorkerQuerySet(models.QuerySet):
    def for_token(self, token: str) -> Worker | None:
        return self.filter(token_hash=hash_token(token), is_active=True).first()


class Worker(models.Model):
    """A worker identity. Workers authenticate with a token; only its hash is stored.

    ``trust_pin`` (0..1), when set by an admin, overrides the learned trust of this worker
    for every knowledge type. ``state`` is the worker's own heartbeat/status document.
    """

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(r"^[a-z0-9][a-z0-9_.-]*$", "lower-case letters, digits, _ . -")],
    )
    kind = models.CharField(max_length=16, choices=WorkerKind.choices, default=WorkerKind.CUSTOM)
    description = models.CharField(max_length=200, blank=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_prefix = models.CharField(max_length=16, editable=False, blank=True)
    is_active = models.BooleanField(default=True)
    trust_pin = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Pinned trust 0..1 overriding the learned trust for every type.",
    )
    state = models.JSONField(default=dict, blank=True)
    broadcast_count = models.PositiveBigIntegerField(default=0)
    received_count = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    objects = WorkerQuerySet.as_manager()

    class Meta:
        # The table keeps the name it had in the ``workers`` app: the move to ``identity``
        # changed only Django's state (identity/migrations/0001_initial.py), no data moved.
        db_table = "workers_worker"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        # Authentication caches token -> worker for a few seconds: forget it on any change
        # (rotation, deactivation), so the old token or an inactive worker is refused at once.
        from django.core.cache import cache

        stale = [token_cache_key(self.token_hash)]
        if getattr(self, "_previous_token_hash", None):
            stale.append(token_cache_key(self._previous_token_hash))
        cache.delete_many(stale)

    def set_token(self, token: str | None = None) -> str:
        """Give the worker a new token and return it; only the hash is kept."""
        token = token or new_token()
        if self.token_hash:
            self._previous_token_hash = self.token_hash
        self.token_hash = hash_token(token)
        self.token_prefix = token[: TOKEN_PREFIX_LEN + 3]
        return token


class WorkerScope(models.Model):
    """The knowledge types a worker may write and read, where an admin set them.

    ``None`` (the default) means the default of ``KNOWLEDGE_EXCHANGE['scope_mode']``
    (``open``: every type; ``registry``: the registry's ``broadcast_by`` / ``interested``);
    a list replaces it (``[]``: none, ``["*"]``: every type). Evaluated by
    ``knowledge/scopes.py``; see docs/security.md ("Scopes").
    """

    worker = models.OneToOneField(
        Worker, on_delete=models.CASCADE, primary_key=True, related_name="scope"
    )
    write_types = models.JSONField(
        null=True,
        blank=True,
        help_text='Types it may broadcast: empty = the default of scope_mode; [] none; ["*"] all.',
    )
    read_types = models.JSONField(
        null=True,
        blank=True,
        help_text='Untargeted types it may read: empty = the default of scope_mode; ["*"] all.',
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"scope of worker {self.worker_id}"

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        self._forget()

    def delete(self, *args, **kwargs):
        self._forget()
        return super().delete(*args, **kwargs)

    def _forget(self) -> None:
        """Drop the cached copies of these lists: the scope entry, and the worker's token
        entry, which carries them (identity/authentication.py)."""
        from django.core.cache import cache

        stale = [scope_cache_key(self.worker_id)]
        token_hash = Worker.objects.filter(pk=self.worker_id).values_list("token_hash", flat=True)
        stale += [token_cache_key(h) for h in token_hash]
        cache.delete_many(stale)

    def clean(self):
        from django.core.exceptions import ValidationError

        for name in ("write_types", "read_types"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, list) or not all(isinstance(t, str) for t in value)
            ):
                raise ValidationError({name: 'a list of type names, ["*"] or empty'})


def scope_cache_key(worker_id: int) -> str:
    return f"kx:scope:{worker_id}"
