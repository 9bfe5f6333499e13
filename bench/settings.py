"""Bench-only settings: the production settings plus the naive baseline's URLs and a
middleware that reports server time and DB queries per request in response headers.
Never used outside ``python -m bench``."""

from config.settings import *  # noqa: F403
from config.settings import MIDDLEWARE

ROOT_URLCONF = "bench.urls"
MIDDLEWARE = ["bench.middleware.ServerTimingMiddleware", *MIDDLEWARE]
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
