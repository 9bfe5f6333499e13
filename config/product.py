"""The product settings: one typed, frozen object owning every key and its default.

``config/settings.py`` sets ``KNOWLEDGE_EXCHANGE = ProductSettings.from_env()``: each key is
read once from ``KE_<KEY>`` (upper case; a few keep an older name, see ``env``), parsed by
its type, and a bad value stops the process with ``ImproperlyConfigured`` naming the variable.
Code reads the settings through ``product_settings()``, which re-reads
``django.conf.settings.KNOWLEDGE_EXCHANGE`` on each call, so ``override_settings`` and the
pytest ``settings`` fixture work. An override may be the object itself
(``product_settings().replace(cache_ttl=30)``) or a plain mapping of keys
(``{**settings.KNOWLEDGE_EXCHANGE, "cache_ttl": 30}``); a mapping is validated the same way
as the environment (unknown key or wrong type: ``ImproperlyConfigured``).

Every key is documented in ``docs/architecture.md`` ("Product settings").
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from config.env import envbool, envfloat, envint, envstr


def _env(name: str) -> dict:
    return {"env": name}


@dataclass(frozen=True)
class ProductSettings(Mapping):
    # Features
    websocket_enabled: bool = True
    cache_enabled: bool = True
    cache_ttl: int = 300
    conflict_resolution_enabled: bool = True
    resolution_strategy: str = "truth"
    # The probability of the winning claim (truth strategy: a calibrated posterior) at or
    # above which a proposal is applied at once (docs/conflicts.md). Per type: the registry.
    auto_resolve_threshold: float = 0.95
    # False = shadow mode: the engine proposes, every conflict waits for a person.
    conflict_auto_resolve: bool = True
    # Seconds a contradiction must be old before it may be auto-resolved (0 = at once);
    # with > 0 run `manage.py sweep_conflicts` periodically.
    conflict_settle_seconds: float = 0.0
    # Discount sources that quickly repeat another source's claim (copy detection).
    conflict_copy_detection: bool = True
    # How long the event log keeps events (the pruner applies it).
    event_retention_days: int = 30
    # How the event log keeps seq order = what readers may pass (knowledge/events.py):
    # "snapshot" (no log-wide lock; readers stop at the oldest running transaction) or
    # "lock" (publishers serialise on the log's tail lock). PostgreSQL only: SQLite always
    # serialises writers. Every process of one database must use the same mode.
    event_ordering: str = "snapshot"
    # Security (docs/security.md): one review request per conflict per requester per this
    # many seconds (0 = no limit); default write/read scopes: "open" or "registry".
    review_request_interval: int = 600
    scope_mode: str = "open"
    # Limits
    max_body_bytes: int = 1_048_576
    max_payload_bytes: int = 65_536
    max_bulk_items: int = 1000
    # A client's observed_at may run ahead of the server clock by this much.
    clock_skew_tolerance_seconds: int = field(default=60, metadata=_env("KE_CLOCK_SKEW_TOLERANCE"))
    long_poll_max_wait: int = 30
    query_max_limit: int = 500
    # Free text (q) reads the subject's words when the knowledge table holds at least this
    # many rows (the planner's estimate), else the trigram index, which is cheaper on small
    # tables (docs/performance.md, "Free text at 1M (2026-12-02)": a tie at 10,000 items,
    # words 12 % faster at 30,000); 0 = always the words.
    search_words_min_rows: int = 20_000
    # The admin's item list counts an unfiltered table by the planner's estimate from this
    # many rows (an exact COUNT(*) was ~0.1 s per page at 1,000,000 items); 0 = always exact.
    admin_estimated_count_rows: int = 100_000
    # Free text by freshness, and a source/urgency query with few matches, as one statement
    # written by hand (docs/performance.md, "Free text at 1M (2026-12-02)"); false = the ORM's
    # queryset and the per-type merge, as before (what the tests compare it with).
    query_one_statement: bool = True
    # Deepest nesting of a JSON body (the body itself is level 1); deeper is a 400.
    max_json_depth: int = 400
    # Longest URL (path + query string) before 414; daphne cuts request lines at 16 KB.
    max_url_bytes: int = 8192
    # Throttles (docs/security.md, "Limits"), counted on the shared cache. Rates are N/s,
    # N/min, N/hour or N/day; "" = no limit. The defaults are a ceiling far above what the
    # benchmark and the built-in workers send; tighten them per fleet.
    throttle_enabled: bool = True
    throttle_rate_address: str = "120000/min"
    throttle_rate_client: str = "30000/min"
    throttle_rate_broadcast: str = "20000/min"
    throttle_rate_query: str = "20000/min"
    # GET events?wait>0 in flight per token (or person), all processes together; 0 = no cap.
    long_polls_per_token: int = 16
    # Failed logins (admin, dashboard, browsable API) per user name + address, and per
    # address for any name, before every attempt is refused until the window ends.
    login_max_failures: int = 5
    login_max_failures_per_address: int = 50
    login_lockout_seconds: int = 900
    # GET /metrics: the database gauges at most once per this many seconds (shared cache);
    # with a token, scrapes must send "Authorization: Bearer <token>".
    metrics_cache_seconds: float = 5.0
    metrics_token: str = ""
    # Time series (docs/monitoring.md): per-minute rollups kept this many hours (the alert
    # checker writes and prunes them); the URL the checker reads API latency and live
    # connections from ("" = http://$HOST:$PORT/metrics, the Procfile's web process).
    timeseries_retention_hours: int = 48
    timeseries_scrape_url: str = ""
    # Live feed (docs/realtime.md)
    ws_max_queue: int = 1000
    ws_heartbeat_seconds: float = 15.0
    ws_stall_seconds: float = 10.0
    # Daphne-only internals (knowledge/daphne_transport.py), used only when the daphne/Twisted
    # versions pass its check: back-pressure on the socket, and direct writes of pre-built
    # frames into Twisted's buffers (the fan-out figures of docs/realtime.md, Benchmark, need
    # it). Both on by default, and off by themselves when the version check fails.
    ws_backpressure: bool = True
    ws_direct_write: bool = True
    # Socket handshakes in progress per server process (knowledge/handshakes.py); past it a
    # handshake is refused at once with HTTP 503 + Retry-After (or close 4013) instead of
    # timing out late (0: no bound). docs/realtime.md, "Handshake bound".
    ws_handshakes_in_flight: int = 64
    # The shortest Retry-After of that refusal; each refused client gets its own later slot.
    ws_handshake_retry_after: int = 1
    # How often each relay re-checks the credentials of its sockets and long polls.
    live_auth_recheck_seconds: float = 0.5
    # A relay with no connection stops after this long (long polls come and go).
    relay_idle_seconds: float = 10.0
    # Kernel send buffer of a live-feed socket (bytes; 0 = the kernel's autotuning).
    ws_socket_sndbuf: int = 65_536
    # How often the relay re-reads the workers' standing filters (subscribe/unsubscribe).
    ws_standing_refresh_seconds: float = 2.0
    # How often each process's relay polls the log when nothing woke it (0 = auto: 0.05 s
    # embedded, where the poll is how it learns of other processes' commits (the built-in
    # workers'); 1 s with Redis, which wakes it at once). docs/performance.md, "10,000
    # connections": 0.2 s embedded gave a fan-out P95 of 275-288 ms, 0.05 s 114 ms.
    relay_poll_interval: float = 0.0
    # Threads the relay uses for its database reads.
    relay_db_threads: int = 4
    # Database outage (docs/operations.md): API requests answer 503 with this Retry-After
    # (seconds); health gives each check this long before it reports it failed.
    db_unavailable_retry_after: int = 5
    health_probe_timeout: float = 1.0
    # Retention (manage.py prune): superseded items older than this many days are deleted
    # (0 = keep superseded history for ever); ephemeral types' items go after 5 decay times.
    superseded_retention_days: int = 0
    # Serve static files from the ASGI app (embedded mode; behind a web server: false).
    serve_static: bool = field(default=True, metadata=_env("KE_SERVE_STATIC"))
    # The web process's garbage collector (config/runtime.py; docs/performance.md, "Bulk
    # ingest at 1M"): freeze what startup built (the full collections stop walking Django's
    # own objects) and collect the youngest generation after this many allocations instead
    # of Python's 700 (0 = Python's default).
    gc_freeze: bool = True
    gc_gen0_threshold: int = 50_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = _kind(f)
            ok = (
                isinstance(value, bool)
                if kind is bool
                else isinstance(value, int) and not isinstance(value, bool)
                if kind is int
                else isinstance(value, int | float) and not isinstance(value, bool)
                if kind is float
                else isinstance(value, str)
            )
            if not ok:
                raise ImproperlyConfigured(
                    f"KNOWLEDGE_EXCHANGE[{f.name!r}]={value!r}: expected {kind.__name__}"
                )
            if kind in (int, float) and value < 0:
                raise ImproperlyConfigured(f"KNOWLEDGE_EXCHANGE[{f.name!r}]={value!r} is negative")
            if f.name.startswith("throttle_rate_") and value and not _is_rate(value):
                raise ImproperlyConfigured(
                    f"KNOWLEDGE_EXCHANGE[{f.name!r}]={value!r} is not a rate like 600/min "
                    f"(or empty for no limit); set by {env_name(f.name)}"
                )
        if self.event_ordering not in ("lock", "snapshot"):
            raise ImproperlyConfigured(
                f"KNOWLEDGE_EXCHANGE['event_ordering']={self.event_ordering!r}: "
                "expected lock or snapshot"
            )
        if self.scope_mode not in ("open", "registry"):
            raise ImproperlyConfigured(
                f"KNOWLEDGE_EXCHANGE['scope_mode']={self.scope_mode!r}: expected open or registry"
            )

    # construction --------------------------------------------------------------------------

    @classmethod
    def from_env(cls) -> ProductSettings:
        readers = {bool: envbool, int: envint, float: envfloat, str: envstr}
        values = {}
        for f in fields(cls):
            values[f.name] = readers[_kind(f)](env_name(f.name), f.default)
        return cls(**values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ProductSettings:
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ImproperlyConfigured(f"unknown KNOWLEDGE_EXCHANGE keys: {sorted(unknown)}")
        return cls(**values)

    def replace(self, **changes: Any) -> ProductSettings:
        return dataclasses.replace(self, **changes)

    # derived values ------------------------------------------------------------------------

    def relay_poll_seconds(self, redis: bool) -> float:
        return self.relay_poll_interval or (1.0 if redis else 0.05)

    # read-only mapping (``{**settings.KNOWLEDGE_EXCHANGE, key: value}`` in overrides) --------

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        return _field_names(cls)


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    # Read on every ``settings.KNOWLEDGE_EXCHANGE[key]`` (six per broadcast in conflict
    # detection alone): ``fields()`` once per class, not once per read.
    return tuple(f.name for f in fields(cls))


_KINDS = {"bool": bool, "int": int, "float": float, "str": str}


def _is_rate(value: str) -> bool:
    """``N/period`` with period s, sec, m, min, hour, day (DRF's throttle rate format)."""
    num, _, period = value.partition("/")
    return num.strip().isdigit() and period.strip()[:1] in ("s", "m", "h", "d")


def _kind(f: dataclasses.Field) -> type:
    return _KINDS[f.type] if isinstance(f.type, str) else f.type


def env_name(key: str) -> str:
    """The environment variable that sets ``key``."""
    f = next(f for f in fields(ProductSettings) if f.name == key)
    return f.metadata.get("env", f"KE_{key.upper()}")


def product_settings() -> ProductSettings:
    """The current product settings (re-read each call, so test overrides apply)."""
    from django.conf import settings

    value = settings.KNOWLEDGE_EXCHANGE
    if isinstance(value, ProductSettings):
        return value
    return ProductSettings.from_mapping(value)
