from django.urls import path

from knowledge.api import views

urlpatterns = [
    path("broadcast", views.BroadcastView.as_view(), name="broadcast"),
    path("broadcast/bulk", views.BulkBroadcastView.as_view(), name="broadcast-bulk"),
    path("query", views.QueryView.as_view(), name="query"),
    path("items/<int:pk>", views.ItemView.as_view(), name="item"),
    path("types", views.TypesView.as_view(), name="types"),
    path("receive/<str:worker>", views.ReceiveView.as_view(), name="receive"),
    path("receive/<str:worker>/ack", views.AckView.as_view(), name="ack"),
    path("validate", views.ValidateView.as_view(), name="validate"),
    path("state/<str:worker>", views.StateView.as_view(), name="state"),
    path("state/<str:worker>/clear", views.ClearStateView.as_view(), name="state-clear"),
    path("stats", views.StatsView.as_view(), name="stats"),
    path("subscribe", views.SubscribeView.as_view(), name="subscribe"),
    path("unsubscribe", views.UnsubscribeView.as_view(), name="unsubscribe"),
    path("events", views.events_view, name="events"),
    path("health", views.HealthView.as_view(), name="health"),
]
