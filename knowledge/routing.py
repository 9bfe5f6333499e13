"""The socket route, behind an Origin check (issue 10: cross-site WebSocket hijacking), the
handshake bound (knowledge/handshakes.py) and the session middleware for cookie clients."""

from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.urls import path

from knowledge import live_auth
from knowledge.consumers import KnowledgeConsumer
from knowledge.handshakes import HandshakeGate

websocket_urlpatterns = [path("ws/knowledge/", KnowledgeConsumer.as_asgi())]


def websocket_app(extra_patterns=()):
    """The socket side of the ASGI app: Origin first (a foreign page takes no handshake
    slot), then the bound on handshakes in progress, then the session only for sockets
    without a token. ``extra_patterns``: the benchmark's baseline consumer."""
    return OriginCheck(
        HandshakeGate(SessionUnlessToken(URLRouter([*websocket_urlpatterns, *extra_patterns])))
    )


def origin_allowed(headers: dict[bytes, bytes]) -> bool:
    """May a socket handshake with these headers proceed?

    - No ``Origin``: not a browser (the SDK, a worker, a script with a token): allowed. A
      browser always sends one with a WebSocket handshake, so a page cannot drop it.
    - Otherwise the Origin must be this server itself (same host *and port* as the ``Host``
      header, which must be in ``ALLOWED_HOSTS``) or listed in ``CSRF_TRUSTED_ORIGINS`` — the
      rule Django's CSRF check applies to a form post. Channels' AllowedHostsOriginValidator
      compares host names only, so a page on another port of the same host would pass it.
    """
    origin = headers.get(b"origin")
    if origin is None:
        return True
    origin = origin.decode("latin-1").strip()
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    netloc = urlsplit(origin).netloc.lower()
    domain, _port = split_domain_port(host)
    return bool(netloc) and netloc == host and validate_host(domain, settings.ALLOWED_HOSTS)


class SessionUnlessToken:
    """ASGI middleware: Channels' cookie, session and user middleware for a socket without a
    ``?token=`` (a staff session, the dashboard) only. Resolving ``scope["user"]`` costs a
    thread hop (``channels.auth.get_user``) even when there is no cookie; a token client
    never reads it (``live_auth.socket_viewer``: a token wins)."""

    def __init__(self, app):
        self.app = app
        self.with_session = AuthMiddlewareStack(app)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and live_auth.socket_token(scope):
            return await self.app(scope, receive, send)
        return await self.with_session(scope, receive, send)


class OriginCheck:
    """ASGI middleware: refuse (HTTP 403 at the handshake) a socket whose Origin is foreign."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(dict(scope.get("headers", ()))):
            return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)
