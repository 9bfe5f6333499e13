"""Token authentication for workers: ``Authorization: Token <key>``."""

from __future__ import annotations

from django.core.cache import cache
from rest_framework import authentication, exceptions

from identity.actions import touch_last_seen
from identity.models import Worker, hash_token, token_cache_key

# A token lookup is one query per request; cached a few seconds it is none, which is what
# makes a cached query answer without touching the database. Rotating a token or saving the
# worker (deactivation) drops the entry at once (Worker.save).
TOKEN_CACHE_SECONDS = 10


def worker_for_token(token: str) -> Worker | None:
    key = token_cache_key(hash_token(token))
    worker = cache.get(key)
    if worker is None:
        worker = Worker.objects.for_token(token)
        if worker is not None:
            cache.set(key, worker, TOKEN_CACHE_SECONDS)
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
        worker = worker_for_token(token)
        if worker is None:
            raise exceptions.AuthenticationFailed("Invalid or inactive worker token.")
        if touch_last_seen(worker):
            cache.set(token_cache_key(worker.token_hash), worker, TOKEN_CACHE_SECONDS)
        return WorkerPrincipal(worker), worker

    def authenticate_header(self, request):
        return self.keyword
