from django.urls import path

from identity.api import views

urlpatterns = [
    path("", views.WorkerListView.as_view(), name="worker-list"),
    path("me", views.MeView.as_view(), name="worker-me"),
]
