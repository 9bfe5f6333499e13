import os

from django.urls import path

from knowledge.consumers import KnowledgeConsumer

websocket_urlpatterns = [path("ws/knowledge/", KnowledgeConsumer.as_asgi())]

if os.environ.get("KE_BENCH_ROUTES") == "1":
    # `make bench-ws` only: the plain Channels group_send baseline (bench/ws/group_consumer.py).
    from bench.ws.group_consumer import BenchGroupConsumer

    websocket_urlpatterns.append(path("ws/bench/group/", BenchGroupConsumer.as_asgi()))
