"""Who is on the live feed, and whether they still may be: checked at connect and re-checked.

Credentials are not checked once. Each open socket and parked long poll carries the
``Credential`` it came in with (the hash of its worker token, or its session key); every
process's relay re-checks the credentials of its own connections against the database every
``live_auth_recheck_seconds`` (0.5 s) and ends the ones that no longer hold (docs/realtime.md,
"Revocation"). That covers every way a credential can stop holding — ``create_worker
--rotate``, the admin's rotate action, a deactivated worker or person, a logout, an expired or
flushed session, a password change, a staff flag removed — on every process, whatever wrote the
change and whether or not Redis is up: the database is the one place they all meet.

Close codes: 4401 the credential no longer authenticates anyone; 4403 it does, but that person
may no longer read the feed (not staff any more). A long poll answers 401 / 403 instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import import_module
from types import SimpleNamespace
from urllib.parse import parse_qs

from django.conf import settings
from django.contrib import auth

from identity.authentication import worker_for_token
from identity.models import Worker
from knowledge.scopes import read_types

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


@dataclass(frozen=True)
class Credential:
    kind: str  # "token" or "session"
    key: str  # the token's hash, or the session key


@dataclass(frozen=True)
class Viewer:
    label: str  # "worker:think" or "user:alice"
    worker: str | None  # the worker's name; None for a person
    credential: Credential
    read_types: frozenset | None = None  # the worker's read scope (knowledge/scopes.py)


def socket_token(scope) -> str:
    """The worker token of a socket (``?token=``), or ""."""
    query_string = scope.get("query_string", b"")
    if b"token=" not in query_string:
        return ""
    return parse_qs(query_string.decode(errors="replace")).get("token", [""])[0]


def socket_viewer(scope) -> Viewer | None:
    """A worker token (``?token=``) or a staff session; None if neither (sync: cache, DB).

    A token is looked up in the token cache, whose entry carries the worker's read scope
    (identity/authentication.py): a reconnect within ``TOKEN_CACHE_SECONDS`` of the worker's
    last request or socket makes no query. It used to make one for the token and read the
    scope separately (docs/performance.md, "Handshake")."""
    token = socket_token(scope)
    if token:
        worker = worker_for_token(token)
        if worker is None:
            return None
        return Viewer(
            f"worker:{worker.name}",
            worker.name,
            Credential("token", worker.token_hash),
            read_types(worker),
        )
    user = scope.get("user")
    session = scope.get("session")
    key = getattr(session, "session_key", None)
    if user is not None and user.is_authenticated and user.is_staff and key:
        return Viewer(f"user:{user.get_username()}", None, Credential("session", key))
    return None


def request_credential(request) -> Credential | None:
    """The credential a DRF request authenticated with (for a long poll)."""
    if isinstance(request.auth, Worker):
        return Credential("token", request.auth.token_hash)
    key = getattr(getattr(request, "session", None), "session_key", None)
    return Credential("session", key) if key else None


def _session_code(key: str) -> int | None:
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=key)
    # Django's own check: session present, user active, session hash matching the password.
    user = auth.get_user(SimpleNamespace(session=store))
    if not user.is_authenticated:
        return CLOSE_UNAUTHENTICATED
    return None if user.is_staff else CLOSE_FORBIDDEN


def revoked(credentials: Iterable[Credential]) -> dict[Credential, int]:
    """The credentials that no longer hold, with the close code for each (sync: DB)."""
    credentials = set(credentials)
    hashes = {c.key for c in credentials if c.kind == "token"}
    valid = (
        set(
            Worker.objects.filter(token_hash__in=hashes, is_active=True).values_list(
                "token_hash", flat=True
            )
        )
        if hashes
        else set()
    )
    out = {
        c: CLOSE_UNAUTHENTICATED for c in credentials if c.kind == "token" and c.key not in valid
    }
    for cred in credentials:
        if cred.kind == "session":
            code = _session_code(cred.key)
            if code is not None:
                out[cred] = code
    return out
