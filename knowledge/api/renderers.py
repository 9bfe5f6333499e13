"""JSON rendering with orjson: the bytes DRF's ``JSONRenderer`` writes, at a fraction of the CPU.

Profiles of the hot paths (docs/performance.md, "Profiles") showed DRF's ``json.dumps``
rendering among the largest costs of a query page and of a bulk answer. This renderer keeps
the wire format: compact separators, UTF-8 rather than ``\\u`` escapes, datetimes as DRF
writes them (``Z`` for UTC), and everything else orjson cannot encode natively (lazy strings,
Decimal, sets, ...) through DRF's own encoder. An indented answer (``Accept:
application/json; indent=2``) and anything orjson refuses (integers beyond 64 bits) fall back
to DRF's renderer, so the answer is never different, only faster.
"""

from __future__ import annotations

import orjson
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS
_default = JSONEncoder().default


def dumps(data) -> bytes:
    """``data`` as the JSON bytes DRF would render (compact, UTF-8; U+2028 and U+2029
    escaped, as DRF does for JavaScript's sake)."""
    return js_safe(orjson.dumps(data, default=_default, option=_OPTIONS))


def js_safe(out: bytes) -> bytes:
    """orjson's bytes with U+2028 and U+2029 escaped, as DRF's renderer writes them."""
    if b"\xe2\x80" in out:
        out = out.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    return out


class ORJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        renderer_context = renderer_context or {}
        if self.get_indent(accepted_media_type or "", renderer_context):
            return super().render(data, accepted_media_type, renderer_context)
        try:
            return dumps(data)
        except (orjson.JSONEncodeError, TypeError):
            return super().render(data, accepted_media_type, renderer_context)
