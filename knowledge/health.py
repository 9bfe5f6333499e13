"""Health checks: database, channel layer, cache. Reports no secrets (no URLs, no hosts)."""

from __future__ import annotations

import time
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache, caches
from django.db import connection

from knowledge.events import log_position


def _timed(fn) -> dict:
    start = time.perf_counter()
    try:
        detail = fn() or {}
        ok = True
        error = None
    except Exception as exc:  # a health check reports failures, it does not raise them
        ok, detail, error = False, {}, type(exc).__name__
    out = {"ok": ok, "latency_ms": round((time.perf_counter() - start) * 1000, 2), **detail}
    if error:
        out["error"] = error
    return out


def check_database() -> dict:
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchone()
    pos = log_position()
    return {"vendor": connection.vendor, "log_top": pos.top}


def check_cache() -> dict:
    key = f"kx:health:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=5)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return what was written")
    cache.delete(key)
    return {"backend": type(caches["default"]).__name__}


def check_channel_layer() -> dict:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")

    async def roundtrip():
        import asyncio

        channel = await layer.new_channel()
        await layer.send(channel, {"type": "health.ping"})
        return await asyncio.wait_for(layer.receive(channel), timeout=2)

    message = async_to_sync(roundtrip)()
    if message.get("type") != "health.ping":
        raise RuntimeError("channel layer returned a different message")
    return {"backend": type(layer).__name__}


CHECKS = {"database": check_database, "cache": check_cache, "channel_layer": check_channel_layer}


def run_health_checks() -> dict:
    checks = {name: _timed(fn) for name, fn in CHECKS.items()}
    failed = [n for n, c in checks.items() if not c["ok"]]
    if "database" in failed:
        status = "fail"
    elif failed:
        status = "degraded"
    else:
        status = "ok"
    return {"status": status, "checks": checks}
