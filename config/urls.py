from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

import knowledge.api.openapi  # noqa: F401  (registers the worker token scheme)
from config.api_root import ApiRootView
from dashboard.views import metrics_view
from knowledge.limits import ThrottledAdminLoginForm, ThrottledLoginForm

# Failed logins are limited per user name and address (knowledge/limits.py).
admin.site.login_form = ThrottledAdminLoginForm

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/knowledge/", ApiRootView.as_view(), name="api-root"),
    path("api/knowledge/", include("knowledge.api.urls")),
    path("api/knowledge/", include("conflicts.api.urls")),
    path("api/knowledge/", include("dashboard.api.urls")),
    path("api/workers/", include("identity.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path(
        "api-auth/login/",
        LoginView.as_view(
            template_name="rest_framework/login.html", authentication_form=ThrottledLoginForm
        ),
    ),
    path("api-auth/", include("rest_framework.urls")),
    path("metrics", metrics_view, name="metrics"),
    # The conflict review pages sit beside the dashboard's (conflicts is a layer below it).
    path("dashboard/conflicts/", include("conflicts.urls")),
    path("dashboard/", include("dashboard.urls")),
    path("", include("dashboard.root_urls")),
]

# JSON error bodies under /api/ (knowledge/api/errors.py), Django's pages elsewhere.
handler400 = "knowledge.api.errors.bad_request"
handler403 = "knowledge.api.errors.permission_denied"
handler404 = "knowledge.api.errors.page_not_found"
handler500 = "knowledge.api.errors.server_error"
