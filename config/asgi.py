"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application() does first

from config.http import OneHopASGIHandler, SafeStaticFilesHandler, patch_daphne_line_limit  # noqa: E402

django_asgi_app = OneHopASGIHandler()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from config.product import product_settings  # noqa: E402
from config.runtime import tune_gc  # noqa: E402
from knowledge.routing import websocket_app  # noqa: E402

# Under daphne: answer 414/431 for over-long request lines instead of dropping the connection.
patch_daphne_line_limit()

http_app = django_asgi_app
if settings.DEBUG or product_settings().serve_static:
    # Embedded mode serves its own static files (admin, Swagger UI, the JS client).
    http_app = SafeStaticFilesHandler(django_asgi_app)

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": websocket_app(),
    }
)

# Last: what startup built is frozen out of the collector's reach (config/runtime.py).
tune_gc()
