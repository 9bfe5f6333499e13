"""The server `make bench-ws` runs: the project's ASGI application plus the benchmark's plain
Channels ``group_send`` baseline route (kept out of the product: the core never imports bench)."""

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

from bench.ws.group_consumer import BenchGroupConsumer
from config.asgi import application as project_application  # noqa: F401 (sets Django up)
from config.asgi import http_app
from knowledge.routing import OriginCheck, websocket_urlpatterns

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": OriginCheck(
            AuthMiddlewareStack(
                URLRouter(
                    [*websocket_urlpatterns, path("ws/bench/group/", BenchGroupConsumer.as_asgi())]
                )
            )
        ),
    }
)
