"""The typed product settings: read once from the environment, validated, overridable in tests."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from config.product import ProductSettings, env_name, product_settings


def test_defaults_with_no_environment(monkeypatch):
    for f in fields(ProductSettings):
        monkeypatch.delenv(env_name(f.name), raising=False)
    ps = ProductSettings.from_env()
    assert ps.cache_ttl == 300 and ps.resolution_strategy == "truth"
    assert ps.auto_resolve_threshold == 0.95 and ps.event_retention_days == 30
    assert ps.serve_static is True and ps.relay_db_threads == 4


def test_environment_overrides_each_key_by_type(monkeypatch):
    monkeypatch.setenv("KE_CACHE_TTL", "60")
    monkeypatch.setenv("KE_WEBSOCKET_ENABLED", "false")
    monkeypatch.setenv("KE_WS_STALL_SECONDS", "2.5")
    monkeypatch.setenv("KE_SERVE_STATIC", "no")
    monkeypatch.setenv("KE_CLOCK_SKEW_TOLERANCE", "5")
    ps = ProductSettings.from_env()
    assert (ps.cache_ttl, ps.websocket_enabled, ps.ws_stall_seconds) == (60, False, 2.5)
    assert ps.serve_static is False and ps.clock_skew_tolerance_seconds == 5


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("KE_CACHE_TTL", "five", "KE_CACHE_TTL='five' is not an integer"),
        ("KE_CACHE_ENABLED", "maybe", "KE_CACHE_ENABLED='maybe' is not a boolean"),
        ("KE_AUTO_RESOLVE_THRESHOLD", "high", "is not a number"),
        ("KE_MAX_BULK_ITEMS", "-1", "is negative"),
    ],
)
def test_a_bad_value_fails_loudly(monkeypatch, var, value, message):
    monkeypatch.setenv(var, value)
    with pytest.raises(ImproperlyConfigured, match=message):
        ProductSettings.from_env()


def test_settings_hold_the_typed_object():
    assert isinstance(django_settings.KNOWLEDGE_EXCHANGE, ProductSettings)
    assert django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE == product_settings().max_body_bytes


def test_overrides_apply_at_once_as_object_or_mapping(settings):
    settings.KNOWLEDGE_EXCHANGE = product_settings().replace(cache_ttl=30)
    assert product_settings().cache_ttl == 30
    settings.KNOWLEDGE_EXCHANGE = {**settings.KNOWLEDGE_EXCHANGE, "max_bulk_items": 2}
    assert product_settings().max_bulk_items == 2 and product_settings().cache_ttl == 30


def test_an_override_is_validated_like_the_environment(settings):
    settings.KNOWLEDGE_EXCHANGE = {"cache_tll": 30}
    with pytest.raises(ImproperlyConfigured, match="unknown KNOWLEDGE_EXCHANGE keys"):
        product_settings()
    settings.KNOWLEDGE_EXCHANGE = {"cache_ttl": "30"}
    with pytest.raises(ImproperlyConfigured, match="expected int"):
        product_settings()


def test_the_object_is_frozen():
    with pytest.raises(AttributeError):
        product_settings().cache_ttl = 1  # type: ignore[misc]


def test_relay_poll_interval_zero_means_by_backend():
    ps = ProductSettings()
    assert ps.relay_poll_seconds(redis=True) == 1.0 and ps.relay_poll_seconds(redis=False) == 0.05
    assert ps.replace(relay_poll_interval=0.5).relay_poll_seconds(redis=True) == 0.5


def test_every_key_is_documented():
    doc = (Path(django_settings.BASE_DIR) / "docs" / "architecture.md").read_text()
    missing = [f.name for f in fields(ProductSettings) if f"| `{f.name}` |" not in doc]
    assert not missing, f"document these keys in docs/architecture.md: {missing}"
    missing_env = [f.name for f in fields(ProductSettings) if f"`{env_name(f.name)}`" not in doc]
    assert not missing_env, missing_env
