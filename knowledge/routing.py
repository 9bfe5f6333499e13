from django.urls import path

from knowledge.consumers import KnowledgeConsumer

websocket_urlpatterns = [path("ws/knowledge/", KnowledgeConsumer.as_asgi())]
