from django.urls import path
from django.views.generic import RedirectView

from dashboard.views import favicon

urlpatterns = [
    path("", RedirectView.as_view(url="/dashboard/", permanent=False)),
    # Pages without our base template (the admin, DRF's browsable API) ask for this one.
    path("favicon.ico", favicon),
]
