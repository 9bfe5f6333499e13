"""The orjson renderer writes the bytes DRF's JSONRenderer writes (the JSON contract)."""

import datetime
import decimal
import uuid

import pytest
from django.utils.translation import gettext_lazy
from rest_framework.renderers import JSONRenderer

from knowledge.api.renderers import ORJSONRenderer

VALUES = [
    {"when": datetime.datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=datetime.UTC)},
    {"day": datetime.date(2026, 1, 2), "time": datetime.time(1, 2, 3)},
    {"id": uuid.UUID(int=5), "amount": decimal.Decimal("1.50")},
    {"lazy": gettext_lazy("not found"), "set": frozenset([1]), "tuple": (1, "a")},
    {"text": 'é ü 日本 \u2028 \u2029 \x00 "quoted" \\'},
    {"nested": [{"a": None, "b": True, "c": 0.1, "d": -0.0, "e": 1e300}], 7: "int key"},
    {"big": 2**70},  # beyond orjson's 64 bits: DRF's renderer answers
    [],
    "plain",
]


@pytest.mark.parametrize("value", VALUES)
def test_same_bytes_as_drf(value):
    assert ORJSONRenderer().render(value) == JSONRenderer().render(value)


def test_indent_request_is_honoured():
    out = ORJSONRenderer().render({"a": [1]}, "application/json; indent=2", {})
    assert out == JSONRenderer().render({"a": [1]}, "application/json; indent=2", {})
    assert b"\n  " in out


def test_none_renders_empty():
    assert ORJSONRenderer().render(None) == b""


@pytest.mark.django_db
def test_api_answers_through_orjson(client, settings):
    assert settings.REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"][0].endswith("ORJSONRenderer")
    response = client.get("/api/knowledge/health")
    assert response["Content-Type"] == "application/json"
    assert response.json()["status"] in ("ok", "warn", "fail")
