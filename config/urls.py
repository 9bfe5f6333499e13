from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from dashboard.views import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/knowledge/", include("knowledge.api.urls")),
    path("api/knowledge/", include("conflicts.api.urls")),
    path("api/workers/", include("identity.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api-auth/", include("rest_framework.urls")),
    path("metrics", metrics_view, name="metrics"),
    # The conflict review pages sit beside the dashboard's (conflicts is a layer below it).
    path("dashboard/conflicts/", include("conflicts.urls")),
    path("dashboard/", include("dashboard.urls")),
    path("", include("dashboard.root_urls")),
]
