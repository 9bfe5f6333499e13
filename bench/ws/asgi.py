"""The production ASGI app plus the plain Channels ``group_send`` baseline at
``/ws/bench/group/`` (``make bench-ws`` only; bench/ws/group_consumer.py)."""

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

from bench.ws.group_consumer import BenchGroupConsumer
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
