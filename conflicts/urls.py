"""Review pages, included from config/urls.py under /dashboard/conflicts/ (namespace ``conflicts``)."""

from django.urls import path

from conflicts import views

app_name = "conflicts"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("history/", views.history, name="history"),
    path("<int:pk>/", views.detail, name="detail"),
]
