"""Rate limits, long polls in flight and login attempts, counted on the shared cache.

Every limit is a key of ``KNOWLEDGE_EXCHANGE`` (docs/security.md, "Limits"); the cache is
Redis in production, so the counts hold across every server process, and the local-memory
cache embedded (one process). If the cache is unreachable the limits fail open: a Redis
outage must not take the API down (the cache is configured to ignore its errors).

- ``ClientRateThrottle`` / ``ScopedClientThrottle`` are DRF throttles (``REST_FRAMEWORK``'s
  ``DEFAULT_THROTTLE_CLASSES``): per worker token, or per person for session requests, and per
  scope (``broadcast``, ``query``). ``AddressRateThrottle`` is per client address; it runs in
  ``knowledge.middleware.AddressThrottleMiddleware`` before authentication, so requests that
  fail authentication are counted too.
- They count in fixed windows with one atomic ``incr`` per request. DRF's stock throttles
  keep a list of every request time in the window and rewrite it on each request (read,
  filter, write: O(rate) work and lost updates between processes); at the rates a fleet
  needs, the counter is the cheaper and exact one. The cost is that a client may send up to
  twice the rate across a window boundary.
- ``long_poll_slot`` caps the long polls (``GET events?wait>0``) one token has in flight.
- One round trip per request (``count_request``, called by the address middleware): every
  counter the request is subject to (address; for a worker token, the per-token and the
  route's scope counters) and the token's cache entry (the worker with its scopes) are sent
  to Redis as one pipeline; the throttles and the authentication then use what it brought
  back instead of a round trip each. Per-token counters are keyed by the token (its hash),
  which is known before authentication; so a request with a token that fails
  authentication or permission counts against that token's (unused) counters too.
"""

from __future__ import annotations

import functools
import math
import time
from contextlib import contextmanager

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.urls import Resolver404, resolve
from rest_framework.exceptions import Throttled
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from config.product import product_settings
from identity.authentication import PREFETCHED_TOKEN
from identity.models import hash_token, token_cache_key
from identity.permissions import request_worker

#: The request attribute where ``count_request`` leaves its counts: (name, seconds) -> count.
PREFETCHED_COUNTS = "_kx_counts"
#: ... and the values of the keys the view asked for (``prefetch_keys``): key -> value or None.
PREFETCHED_VALUES = "_kx_prefetched"


def limit(name: str, default=None):
    """The product setting ``name`` (config/product.py), read per call so overrides apply."""
    return getattr(product_settings(), name, default)


def parse_rate(rate: str) -> tuple[int, int]:
    """``"600/min"`` -> (600, 60). Raises ValueError on anything else."""
    num, period = rate.split("/")
    duration = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period.strip()[0]]
    return int(num), duration


def client_address(request) -> str:
    """The client's address: REMOTE_ADDR, or the address ``KE_TRUSTED_PROXIES`` proxies
    in front of us put in X-Forwarded-For (DRF's ``NUM_PROXIES`` rule)."""
    xff = request.META.get("HTTP_X_FORWARDED_FOR")
    remote = request.META.get("REMOTE_ADDR") or "unknown"
    proxies = api_settings.NUM_PROXIES
    if not proxies or not xff:
        return remote
    hops = [part.strip() for part in xff.split(",") if part.strip()]
    return hops[-min(proxies, len(hops))] if hops else remote


def client_ident(request) -> str | None:
    """Who a request counts against: its worker, or its signed-in person; None if neither."""
    worker = request_worker(request)
    if worker is not None:
        return f"w{worker.pk}"
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False) and user.pk is not None:
        return f"u{user.pk}"
    return None


def token_ident(token_hash: str) -> str:
    """Who a worker-token request counts against on the rate limits: its token (known before
    authentication, so ``count_request`` can count it)."""
    return f"t{token_hash[:32]}"


def rate_ident(request) -> str | None:
    """``client_ident`` for the rate limits: a worker by its token (``token_ident``)."""
    worker = request_worker(request)
    return token_ident(worker.token_hash) if worker is not None else client_ident(request)


def _window_key(key: str, duration: int) -> str:
    return f"kx:limit:{key}:{int(time.time() // duration)}"


def count_in_window(key: str, duration: int) -> int | None:
    """Add one to ``key``'s counter for the current ``duration``-second window and return
    the new count (None if the cache is unreachable)."""
    full_key = _window_key(key, duration)
    try:
        return cache.incr(full_key)
    except ValueError:  # the window's first request
        if cache.add(full_key, 1, duration + 1):
            return 1
        try:
            return cache.incr(full_key)
        except ValueError:
            return None
    except Exception:  # the cache is down: fail open
        return None


def seconds_left_in_window(duration: int) -> int:
    now = time.time()
    return max(1, math.ceil((int(now // duration) + 1) * duration - now))


class CounterThrottle(SimpleRateThrottle):
    """A DRF throttle whose rate is ``KNOWLEDGE_EXCHANGE['throttle_rate_<scope>']`` (read on
    every request, so a setting override applies at once; empty = no limit)."""

    per = "token"

    def __init__(self):  # the rate is read per request, not once
        pass

    def get_rate(self) -> str | None:
        if not limit("throttle_enabled", True):
            return None
        return limit(f"throttle_rate_{self.scope}") or None

    def get_ident_for(self, request, view) -> str | None:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        refusal = self.refusal(request, view)
        if refusal is None:
            return True
        raise refusal

    def refusal(self, request, view, peek: bool = False) -> Throttled | None:
        """The 429 this throttle answers ``request`` with, or None if it is allowed: the one
        place of the rule. ``peek``: judge only from the count ``count_request`` brought,
        without using it up, and refuse when there is none (the lean query path asks this
        before it answers; DRF's path then still finds the count)."""
        scope = self.get_scope(request, view)
        if scope is None:
            return None
        self.scope = scope
        rate = self.get_rate()
        ident = self.get_ident_for(request, view) if rate else None
        if ident is None:
            return None
        num, duration = parse_rate(rate)
        counts = getattr(request, PREFETCHED_COUNTS, None) or {}
        name = f"{scope}:{ident}"
        if peek:
            if (name, duration) not in counts:
                return Throttled(wait=None)  # not counted yet: DRF's path counts it
            count = counts[(name, duration)]
        elif (name, duration) in counts:  # counted by this request's one round trip
            count = counts.pop((name, duration))
        else:
            count = count_in_window(name, duration)
        if count is None or count <= num:
            return None
        return Throttled(
            wait=seconds_left_in_window(duration),
            detail=f"rate limit '{scope}' exceeded: {rate} per {self.per}",
        )

    def get_scope(self, request, view) -> str | None:
        return self.scope

    def wait(self):
        return None

    def counter_for(self, scope: str | None, ident: str) -> tuple[str, int] | None:
        """(counter name, window seconds) this throttle counts ``ident`` on in ``scope``;
        None without a limit."""
        if scope is None:
            return None
        self.scope = scope
        rate = self.get_rate()
        return (f"{scope}:{ident}", parse_rate(rate)[1]) if rate else None


class AddressRateThrottle(CounterThrottle):
    """Every API request, per client address."""

    scope = "address"
    per = "client address"

    def get_ident_for(self, request, view) -> str | None:
        return client_address(request)


class ClientRateThrottle(CounterThrottle):
    """Every API request, per worker token (or per signed-in person)."""

    scope = "client"

    def get_ident_for(self, request, view) -> str | None:
        return rate_ident(request)


# Routes (URL names) that have their own scope when their view does not set one.
SCOPE_BY_ROUTE = {"broadcast": "broadcast", "broadcast-bulk": "broadcast", "query": "query"}


class ScopedClientThrottle(ClientRateThrottle):
    """DRF's ScopedRateThrottle on the counter: the view's ``throttle_scope``, else the
    route's (``SCOPE_BY_ROUTE``); per worker token (or person)."""

    def get_scope(self, request, view) -> str | None:
        return self.scope_of(view, getattr(request, "resolver_match", None))

    @staticmethod
    def scope_of(view, match) -> str | None:
        scope = getattr(view, "throttle_scope", None)
        if scope is None:
            scope = SCOPE_BY_ROUTE.get(match.url_name) if match else None
        return scope


# --- One round trip per request --------------------------------------------------------


def request_token(request) -> str | None:
    """The token of a well-formed ``Authorization: Token <key>`` header, else None (what
    ``WorkerTokenAuthentication`` reads; anything else it refuses or leaves to others)."""
    header = request.META.get("HTTP_AUTHORIZATION", "").split()
    if len(header) != 2 or header[0].lower() != "token":
        return None
    return header[1]


def within_limits(request, view) -> bool:
    """Whether none of ``view``'s throttles refuses ``request`` (whose ``auth`` is set),
    judged from the counts ``count_request`` brought, which stay for DRF's path (see
    ``CounterThrottle.refusal``). False also when a throttle is not a counter or its count
    was not brought: the caller then leaves the request to DRF."""
    for throttle_class in view.throttle_classes:
        if not issubclass(throttle_class, CounterThrottle):
            return False
        if throttle_class().refusal(request, view, peek=True) is not None:
            return False
    return True


@functools.lru_cache(maxsize=512)
def _route(urlconf: str, path: str):
    """The resolver match of ``path`` (None: no route), memoised: the URL patterns are
    fixed once loaded, and Django resolves the path again for the view anyway."""
    try:
        return resolve(path, urlconf)
    except Resolver404:
        return None


def request_route(request):
    """``request``'s resolver match (None: no route), before Django's own resolution."""
    return _route(getattr(request, "urlconf", None) or settings.ROOT_URLCONF, request.path_info)


def _token_counters(request, token_hash: str) -> list[tuple[str, int]]:
    """The per-token counters the view of ``request`` will check (its DRF throttles)."""
    match = request_route(request)
    if match is None:
        return []
    view = getattr(match.func, "cls", None)  # a DRF APIView's class
    out = []
    for throttle_class in getattr(view, "throttle_classes", ()):
        if issubclass(throttle_class, ClientRateThrottle):
            throttle = throttle_class()
            scope = (
                throttle.scope_of(view, match)
                if isinstance(throttle, ScopedClientThrottle)
                else throttle.scope
            )
            counter = throttle.counter_for(scope, token_ident(token_hash))
            if counter is not None:
                out.append(counter)
    return out


def count_request(request) -> None:
    """Count ``request`` on every counter it is subject to and read its token's cache entry,
    in one round trip (see the module doc); leaves the results on the request. A token
    request's view may name more cache keys to read in the same round trip (a classmethod
    ``prefetch_keys(request)``: the query view's type tokens); their values, None where
    absent, are left under ``PREFETCHED_VALUES``."""
    counters = []
    address = AddressRateThrottle().counter_for("address", client_address(request))
    if address is not None:
        counters.append(address)
    token = request_token(request)
    keys = []
    if token is not None:
        token_hash = hash_token(token)
        keys.append(token_cache_key(token_hash))
        counters += _token_counters(request, token_hash)
        match = request_route(request)
        prefetch = (
            getattr(getattr(match.func, "cls", None), "prefetch_keys", None) if match else None
        )
        if prefetch is not None:
            keys += [k for k in prefetch(request) if k not in keys]
    counts, values = _count_and_get(counters, keys)
    setattr(request, PREFETCHED_COUNTS, dict(zip(counters, counts, strict=True)))
    if keys:
        setattr(request, PREFETCHED_TOKEN, (keys[0], values.get(keys[0])))
        setattr(request, PREFETCHED_VALUES, {k: values.get(k) for k in keys[1:]})


def _count_and_get(counters: list[tuple[str, int]], keys: list[str]) -> tuple[list, dict]:
    """Count each (name, window seconds) counter and read ``keys``: one pipeline on Redis;
    other backends (the in-process memory cache) one call each. Fails open (None counts,
    nothing read) if the cache is unreachable."""
    client = getattr(cache, "client", None)
    if not hasattr(client, "get_client"):  # not django-redis
        return [count_in_window(n, d) for n, d in counters], cache.get_many(keys)
    make_key = cache.make_key
    try:
        redis = client.get_client(write=True)
        pipe = redis.pipeline(transaction=False)
        windows = [(make_key(_window_key(name, duration)), duration) for name, duration in counters]
        for key, _ in windows:
            pipe.incr(key)
        if keys:
            pipe.mget([make_key(key) for key in keys])
        replies = pipe.execute()
        # A window's counter gets its expiry from the request that made it (count 1): one
        # command per counter per request instead of two, and a second round trip only once
        # per counter and window. A process killed in between leaves one key of a past
        # window without expiry (never read again: the window is in its name).
        new = [
            (key, duration) for (key, duration), n in zip(windows, replies, strict=False) if n == 1
        ]
        if new:
            pipe = redis.pipeline(transaction=False)
            for key, duration in new:
                pipe.expire(key, duration + 1)
            pipe.execute()
    except Exception:  # the cache is down: fail open, as count_in_window does
        return [None] * len(counters), {}
    found = replies[len(counters)] if keys else []
    values = {k: client.decode(v) for k, v in zip(keys, found, strict=True) if v is not None}
    return replies[: len(counters)], values


# --- Long polls in flight --------------------------------------------------------------


def _wants_long_poll(request) -> bool:
    try:
        wait = float(request.GET.get("wait", 0))
    except (TypeError, ValueError):
        return False
    return math.isfinite(wait) and wait > 0


def acquire_long_poll(ident: str) -> str | None:
    """Take one of ``ident``'s ``long_polls_per_token`` slots: the slot's key, "" when there
    is no limit (or the cache is down), None when every slot is taken. A slot expires by
    itself after the longest wait, so a process killed mid-poll does not leak it."""
    cap = int(limit("long_polls_per_token", 0) or 0)
    if cap <= 0:
        return ""
    ttl = int(limit("long_poll_max_wait", 30)) + 30
    for index in range(cap):
        key = f"kx:longpoll:{ident}:{index}"
        added = cache.add(key, 1, ttl)
        if added is None:  # the cache is down: fail open
            return ""
        if added:
            return key
    return None


def release_long_poll(slot: str | None) -> None:
    if slot:
        cache.delete(slot)


@contextmanager
def long_poll_slot(request):
    """Hold one of the caller's long-poll slots while the request waits (``wait`` > 0).

    Call it around the waiting part of the events view; raises ``Throttled`` (429 with
    ``Retry-After``) when the token already has ``long_polls_per_token`` polls in flight.
    Async code can call ``acquire_long_poll`` / ``release_long_poll`` (through
    ``sync_to_async``) the same way.
    """
    ident = client_ident(request) if _wants_long_poll(request) else None
    slot = acquire_long_poll(ident) if ident else ""
    if slot is None:
        raise Throttled(
            wait=1,
            detail=f"at most {limit('long_polls_per_token')} long polls in flight per token",
        )
    try:
        yield
    finally:
        release_long_poll(slot)


# --- Login attempts ------------------------------------------------------------------------


def _login_keys(username: str, address: str) -> tuple[str, str]:
    return f"kx:login:{address}:{username.strip().lower()[:150]}", f"kx:login:{address}"


def login_blocked(username: str, address: str) -> bool:
    """True while ``username`` from ``address`` (or ``address`` for any name) has used up its
    failed attempts for the window."""
    pair, by_address = _login_keys(username, address)
    return (cache.get(pair) or 0) >= int(limit("login_max_failures", 5)) or (
        cache.get(by_address) or 0
    ) >= int(limit("login_max_failures_per_address", 50))


def record_login_failure(username: str, address: str) -> None:
    window = int(limit("login_lockout_seconds", 900))
    for key in _login_keys(username, address):
        if not cache.add(key, 1, window):
            try:
                cache.incr(key)
            except ValueError:
                cache.add(key, 1, window)


def clear_login_failures(username: str, address: str) -> None:
    cache.delete(_login_keys(username, address)[0])


class LoginThrottleMixin:
    """For Django's login forms: after ``login_max_failures`` failed attempts for one user
    name from one address (or ``login_max_failures_per_address`` for any name), every attempt
    is refused, even with the right password, until ``login_lockout_seconds`` have passed
    since the first failure. Per name *and* address, so nobody can lock a person out from
    elsewhere."""

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        request = getattr(self, "request", None)
        address = client_address(request) if request is not None else "unknown"
        if login_blocked(username, address):
            minutes = math.ceil(int(limit("login_lockout_seconds", 900)) / 60)
            raise forms.ValidationError(
                f"Too many failed login attempts for this account from your address. "
                f"Try again in {minutes} minutes.",
                code="too_many_attempts",
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            record_login_failure(username, address)
            raise
        clear_login_failures(username, address)
        return cleaned


class ThrottledAdminLoginForm(LoginThrottleMixin, AdminAuthenticationForm):
    """The admin's (and the dashboard's) login form."""


class ThrottledLoginForm(LoginThrottleMixin, AuthenticationForm):
    """The browsable API's login form."""
