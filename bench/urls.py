"""The production URLs plus the naive baseline under /bench/naive/ (bench settings only)."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from bench.naive import NaiveItemViewSet
from config.urls import urlpatterns as production_urlpatterns

router = SimpleRouter()
router.register("items", NaiveItemViewSet, basename="naive-item")

urlpatterns = [path("bench/naive/", include(router.urls)), *production_urlpatterns]
