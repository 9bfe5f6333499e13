"""The production ASGI app plus the plain Channels ``group_send`` baseline at
``/ws/bench/group/`` (``make bench-ws`` only; bench/ws/group_consumer.py)."""

from channels.routing import ProtocolTypeRouter
from django.urls import path

from bench.ws.group_consumer import BenchGroupConsumer
from config.asgi import http_app
from knowledge.routing import websocket_app

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": websocket_app([path("ws/bench/group/", BenchGroupConsumer.as_asgi())]),
    }
)
