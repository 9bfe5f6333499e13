from django.urls import path

from conflicts.api import views

conflict_list = views.ConflictViewSet.as_view({"get": "list"})
conflict_detail = views.ConflictViewSet.as_view({"get": "retrieve"})

urlpatterns = [
    path("conflicts", conflict_list, name="conflict-list"),
    path("conflicts/flag", views.FlagView.as_view(), name="conflict-flag"),
    path("conflicts/<int:pk>", conflict_detail, name="conflict-detail"),
    path(
        "conflicts/<int:pk>/request-resolution",
        views.RequestResolutionView.as_view(),
        name="conflict-request-resolution",
    ),
    path("resolve", views.ResolveView.as_view(), name="conflict-resolve"),
    path("resolution-stats", views.ResolutionStatsView.as_view(), name="resolution-stats"),
]
