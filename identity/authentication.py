"""Token authentication for workers: ``Authorization: Token <key>``."""

from __future__ import annotations

from django.core.cache import cache
from rest_framework import authentication, exceptions

from identity.actions import touch_last_seen
from identity.models import Worker, hash_token, remember_scope, token_cache_key

# A token lookup is one query per request; cached a few seconds it is none, which is what
# makes a cached query answer without touching the database. The entry is the worker with its
# scope lists (one lookup for both). Rotating a token or saving the worker (deactivation) drops
# the entry at once (Worker.save), and so does saving or deleting its scope (WorkerScope.save).
TOKEN_CACHE_SECONDS = 10

#: The request attribute where knowledge/limits.py's one round trip leaves the token entry
#: it read: ``(cache key, worker or None)``.
PREFETCHED_TOKEN = "_kx_token_entry"


def worker_for_token(
    token: str, prefetched: tuple[str, Worker | None] | None = None
) -> Worker | None:
    """The active worker of ``token``, from the token cache (or ``prefetched``, the entry
    already read for this request) else the database."""
    key = token_cache_key(hash_token(token))
    worker = prefetched[1] if prefetched is not None and prefetched[0] == key else cache.get(key)
    if worker is None:
        worker = Worker.objects.for_token(token)
        if worker is not None:
            cache.set(key, remember_scope(worker), TOKEN_CACHE_SECONDS)
    return worker


def authenticated_worker(
    token: str, prefetched: tuple[str, Worker | None] | None = None
) -> Worker | None:
    """The active worker of ``token`` (see ``worker_for_token``), its visit recorded (at most
    one write per 30 s); None for a bad or inactive token. What ``WorkerTokenAuthentication``
    and the lean query path (knowledge/api/lean.py) both accept."""
    worker = worker_for_token(token, prefetched)
    if worker is not None and touch_last_seen(worker):
        cache.set(token_cache_key(worker.token_hash), worker, TOKEN_CACHE_SECONDS)
    return worker


class WorkerPrincipal:
    """The ``request.user`` of a request made with a worker token."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def __init__(self, worker: Worker):
        self.worker = worker
        self.username = f"worker:{worker.name}"
        self.pk = None

    def __str__(self) -> str:
        return self.username


class WorkerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Token <key>'.")
        try:
            token = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Token contains invalid characters.") from None
        worker = authenticated_worker(token, getattr(request._request, PREFETCHED_TOKEN, None))
        if worker is None:
            raise exceptions.AuthenticationFailed("Invalid or inactive worker token.")
        return WorkerPrincipal(worker), worker

    def authenticate_header(self, request):
        return self.keyword
