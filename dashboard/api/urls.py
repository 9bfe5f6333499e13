from django.urls import path

from dashboard.api import views

urlpatterns = [
    path("timeseries", views.TimeSeriesView.as_view(), name="timeseries"),
    path("flow", views.FlowView.as_view(), name="flow"),
]
