from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.index, name="index"),
    path("alerts/", views.alerts, name="alerts"),
    path("live/", views.live, name="live"),
    path("live/connections/", views.live_connections, name="live-connections"),
    path("flow/", views.flow, name="flow"),
    path("workers/", views.workers, name="workers"),
]
