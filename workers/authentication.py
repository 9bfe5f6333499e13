"""Token authentication for workers: ``Authorization: Token <key>``."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from workers.actions import touch_last_seen
from workers.models import Worker


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
        worker = Worker.objects.for_token(token)
        if worker is None:
            raise exceptions.AuthenticationFailed("Invalid or inactive worker token.")
        touch_last_seen(worker)
        return WorkerPrincipal(worker), worker

    def authenticate_header(self, request):
        return self.keyword
