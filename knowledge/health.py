"""Health checks: database, channel layer, cache. Reports no secrets (no URLs, no hosts).

The checks run side by side, each on its own thread with its own connection, and the report
waits at most ``health_probe_timeout`` seconds for them: a database that hangs (not just
refuses) still gets ``fail`` quickly. A probe that overruns is reported as ``timeout`` and
left to finish on its own.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache, caches
from django.db import connection
from django.db.models import Max

from config.product import product_settings
from knowledge.models import Event, LogState


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
    # Read-only (a probe must not write, nor wait on a writer's lock).
    top = Event.objects.aggregate(top=Max("seq"))["top"] or 0
    pruned = LogState.objects.filter(id=1).values_list("pruned_through", flat=True).first()
    return {"vendor": connection.vendor, "log_top": max(top, pruned or 0)}


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


# Probes run here, not on the request's thread; a hung probe holds one of these threads.
_probes = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")


def _probe(fn) -> dict:
    try:
        return _timed(fn)
    finally:
        connection.close()  # this probe thread's own connection (back to the pool)


def run_health_checks() -> dict:
    timeout = product_settings().health_probe_timeout
    started = time.perf_counter()
    futures = {name: _probes.submit(_probe, fn) for name, fn in CHECKS.items()}
    checks = {}
    for name, future in futures.items():
        remaining = max(0.0, timeout - (time.perf_counter() - started))
        try:
            checks[name] = future.result(timeout=remaining)
        except FutureTimeout:
            checks[name] = {"ok": False, "latency_ms": round(timeout * 1000, 2), "error": "timeout"}
    failed = [n for n, c in checks.items() if not c["ok"]]
    if "database" in failed:
        status = "fail"
    elif failed:
        status = "degraded"
    else:
        status = "ok"
    return {"status": status, "checks": checks}
