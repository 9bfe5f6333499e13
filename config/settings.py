"""Knowledge Exchange settings, driven by the environment.

With no environment at all the service runs embedded: a SQLite file under the project
directory, the in-memory channel layer and the local-memory cache. ``DATABASE_URL``
switches to PostgreSQL, ``REDIS_URL`` to Redis for the channel layer and the cache.
Product settings live in ``KNOWLEDGE_EXCHANGE``, a typed object (config/product.py); each
key can be overridden by an environment variable ``KE_<KEY>`` (upper case), e.g.
``KE_CACHE_TTL=60``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dj_database_url

from config.env import envbool, envfloat, envint, envlist, envstr
from config.files import private_text
from config.product import ProductSettings

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = envbool("DJANGO_DEBUG", False)
LOCAL_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]
ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", LOCAL_HOSTS)
SECRET_KEY = envstr("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    # A generated key is per checkout: another machine behind the same load balancer would
    # have another one. So with DEBUG off, a service that answers to real host names
    # (DJANGO_ALLOWED_HOSTS) must be given its key, unless told to generate one anyway.
    # DJANGO_REQUIRE_SECRET_KEY=true requires it in every mode but DEBUG.
    allow_generated = envbool(
        "DJANGO_ALLOW_GENERATED_SECRET_KEY",
        set(ALLOWED_HOSTS) <= set(LOCAL_HOSTS) and not envbool("DJANGO_REQUIRE_SECRET_KEY", False),
    )
    if not DEBUG and not allow_generated:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DEBUG is off and the service answers to "
            f"{', '.join(ALLOWED_HOSTS)} (DJANGO_ALLOWED_HOSTS). Generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`, or set "
            "DJANGO_ALLOW_GENERATED_SECRET_KEY=true to use a key generated into "
            ".secret_key (one machine only)."
        )
    # Embedded mode: a per-checkout key, stable across restarts, never committed, 0600.
    import secrets

    SECRET_KEY = private_text(
        envstr("KE_SECRET_KEY_FILE", str(BASE_DIR / ".secret_key")),
        lambda: secrets.token_urlsafe(50),
    )

CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# A short name for this checkout, used to keep test databases and Redis keys of two
# checkouts on one machine apart.
INSTANCE = envstr("KE_INSTANCE", hashlib.sha1(str(BASE_DIR).encode()).hexdigest()[:8])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "identity",
    "workers",
    "knowledge",
    "conflicts",
    "dashboard",
]

MIDDLEWARE = [
    "config.http.URLLengthLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "knowledge.outage.DatabaseOutageMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "dashboard.middleware.RequestMetricsMiddleware",
    "knowledge.middleware.BodySizeLimitMiddleware",
    "knowledge.middleware.AddressThrottleMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASE_URL = envstr("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", 60), conn_health_checks=True
        )
    }
else:
    DATABASES = {
        "default": {
            # Django's SQLite backend, creating the file 0600 (config/files.py).
            "ENGINE": "config.sqlite3",
            "NAME": envstr("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            "OPTIONS": {
                # Writers take the lock at BEGIN, so two writers never deadlock on upgrade,
                # and WAL lets readers run beside the one writer.
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DATABASES["default"].setdefault("TEST", {})
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file (not :memory:) so live-server and browser tests share it across threads.
    DATABASES["default"]["TEST"]["NAME"] = str(BASE_DIR / f".test-db-{INSTANCE}.sqlite3")
else:
    DATABASES["default"]["TEST"]["NAME"] = f"test_ke_{INSTANCE}"
IS_POSTGRES = "postgresql" in DATABASES["default"]["ENGINE"]
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend with psycopg's C loader for timestamps (config/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "config.postgresql"
# Connection reuse. Under ASGI every request runs its sync code in a new thread, so
# persistent connections (CONN_MAX_AGE) are never reused: each request would open a new
# PostgreSQL connection (2-5 ms, more under load). Django's psycopg 3 pool hands a pooled
# connection to each request instead (docs/performance.md). DB_POOL=false falls back to
# CONN_MAX_AGE.
if IS_POSTGRES and envbool("DB_POOL", True):
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # required with the pool
    # With the pool this makes the pool check each connection as it hands it out, so one
    # broken by a database restart is replaced instead of failing the request that gets it.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": envint("DB_POOL_MIN_SIZE", 2),
        "max_size": envint("DB_POOL_MAX_SIZE", 16),
        # How long a request waits for a pooled connection. Short on purpose: with the
        # database down a request answers 503 + Retry-After in about this long instead of
        # hanging (docs/operations.md); under overload it sheds load the same way.
        "timeout": envfloat("DB_POOL_TIMEOUT", 1.0),
        # Retry a lost database for ever (with backoff capped by the pool), never give up.
        "reconnect_timeout": envfloat("DB_POOL_RECONNECT_TIMEOUT", 3600.0),
    }
if IS_POSTGRES:
    # A database host that does not answer (not just refuses) must not hang a request.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", envint("DB_CONNECT_TIMEOUT", 2)
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache and channel layer ----------------------------------------------------
REDIS_URL = envstr("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "config.redis_cache.ProcessRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"ke-{INSTANCE}",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                # A cache outage must not take the API down: reads miss, writes are dropped.
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 2,
                "SOCKET_TIMEOUT": 2,
            },
        }
    }
    DJANGO_REDIS_IGNORE_EXCEPTIONS = True
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # A sharded layer lists several Redis hosts (comma-separated).
            "CONFIG": {
                "hosts": envlist("KE_CHANNEL_LAYER_HOSTS", [REDIS_URL]),
                "prefix": f"ke-{INSTANCE}",
            },
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"ke-{INSTANCE}",
            "OPTIONS": {"MAX_ENTRIES": 10000},
        }
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Product settings ------------------------------------------------------------------
# One typed, frozen object owning every product key and its default (config/product.py);
# each key is overridable by KE_<KEY>. Read it with config.product.product_settings().
KNOWLEDGE_EXCHANGE = ProductSettings.from_env()

DATA_UPLOAD_MAX_MEMORY_SIZE = KNOWLEDGE_EXCHANGE.max_body_bytes

# --- Auth, DRF, OpenAPI -------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/admin/login/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "identity.authentication.WorkerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["identity.permissions.IsWorkerOrStaff"],
    "DEFAULT_RENDERER_CLASSES": [
        "knowledge.api.renderers.ORJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["knowledge.api.parsers.SafeJSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "knowledge.api.errors.exception_handler",
    # Per token (or person) and per scope; the per-address limit is a middleware
    # (knowledge.middleware.AddressThrottleMiddleware). Rates: KNOWLEDGE_EXCHANGE.
    "DEFAULT_THROTTLE_CLASSES": [
        "knowledge.limits.ClientRateThrottle",
        "knowledge.limits.ScopedClientThrottle",
    ],
    # Proxies in front of daphne whose X-Forwarded-For is trusted for the client address;
    # 0 = use the connection's address (a client cannot pick its own).
    "NUM_PROXIES": envint("KE_TRUSTED_PROXIES", 0),
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Knowledge Exchange API",
    "DESCRIPTION": "Workers broadcast, query and receive typed knowledge that decays with age.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The error answers on every operation; the worker token scheme is registered when
    # config/urls.py imports knowledge/api/openapi.py.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "knowledge.api.openapi.add_error_responses",
    ],
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True, "deepLinking": True},
}

# --- Static, i18n ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / ".staticfiles"

if not DEBUG:
    SESSION_COOKIE_HTTPONLY = True
    CSRF_COOKIE_SAMESITE = "Lax"
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"
    if envbool("DJANGO_SECURE_COOKIES", False):
        SESSION_COOKIE_SECURE = True
        CSRF_COOKIE_SECURE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
