"""The API's JSON parser: bounded nesting and text that can be stored.

Python's ``json`` decoder, the serializers and the encoders all recurse once per level of
nesting, so a deeply nested body used to end in a ``RecursionError`` (a 500). A lone UTF-16
surrogate (``"\\ud800"``) decodes to a Python string that cannot be encoded as UTF-8, so it
used to fail only when stored or rendered (a 500). Both are refused here, before any view
runs, with a 400 naming the field (docs/security.md, "Input handling").
"""

from __future__ import annotations

import io
import re

from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser, get_encoding

from config.product import product_settings


def max_json_depth() -> int:
    return product_settings().max_json_depth


def _text_problem(text: str, nul_ok: bool) -> str | None:
    """Why ``text`` cannot be stored (a lone surrogate; a NUL unless ``nul_ok``), or None."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "lone surrogate characters (e.g. \\ud800) are not allowed"
    if not nul_ok and "\x00" in text:
        return "null characters (\\u0000) are not allowed"
    return None


def _field_name(path: tuple) -> str:
    name = ""
    for part in path:
        name = (
            f"{name}[{part}]"
            if isinstance(part, int)
            else (f"{name}.{part}" if name else str(part))
        )
    return name or "non_field_errors"


def _has_json_problem(value, max_depth: int, nul_ok: bool) -> bool:
    """Whether ``find_json_problem`` finds anything: the same tests, without the paths."""
    stack: list[tuple[object, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if isinstance(node, str):
            # the common case (ASCII, NUL allowed or absent) without a call
            if not (node.isascii() and (nul_ok or "\x00" not in node)):
                if _text_problem(node, nul_ok):
                    return True
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth > max_depth:
            return True
        if isinstance(node, dict):
            for key, child in node.items():
                if isinstance(key, str) and _text_problem(key, nul_ok):
                    return True
                push((child, depth + 1))
        else:
            depth += 1
            for child in node:
                push((child, depth))
    return False


def find_json_problem(value, max_depth: int, nul_ok: bool = True) -> tuple[str, str] | None:
    """``(field, message)`` for the first part of a parsed JSON value that is nested deeper
    than ``max_depth``, or holds a lone surrogate (or a NUL unless ``nul_ok``), else None.

    Iterative (an explicit stack), so it cannot itself run out of recursion depth. A first
    walk only tells whether there is a problem (no paths built: the parser walks every
    bulk's whole body); the walk that names the field runs only when there is one.
    """
    if not _has_json_problem(value, max_depth, nul_ok):
        return None
    stack: list[tuple[object, int, tuple]] = [(value, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, str):
            message = _text_problem(node, nul_ok)
            if message:
                return _field_name(path), message
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth > max_depth:
            return _field_name(path), f"is nested deeper than {max_depth} levels"
        if isinstance(node, dict):
            for key, child in node.items():
                message = _text_problem(key, nul_ok) if isinstance(key, str) else None
                if message:
                    return _field_name(path), f"a key: {message}"
                stack.append((child, depth + 1, (*path, key)))
        else:
            stack.extend((child, depth + 1, (*path, i)) for i, child in enumerate(node))
    return None


# A string (with whether it is a key), or a bracket; enough of JSON to measure nesting.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"(\s*:)?|[\[\]{}]')


def find_deep_nesting(text: str, max_depth: int) -> str | None:
    """The field (dotted keys) under which ``text`` is nested deeper than ``max_depth``, or
    None. Measured on the raw text, before the recursive decoder could run out of stack."""
    if text.count("[") + text.count("{") <= max_depth:
        return None  # cannot be deeper than the number of opening brackets
    depth, keys = 0, []
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > max_depth:
                return ".".join(k for k in keys[: depth - 1] if k) or "non_field_errors"
            keys.append("")
        elif token in "]}":
            depth -= 1
            keys = keys[: max(depth, 0)]
        elif match.group(1) and depth > 0:
            keys[depth - 1] = token[1 : token.rindex('"')]
    return None


class SafeJSONParser(JSONParser):
    """DRF's JSON parser with a depth limit (``KNOWLEDGE_EXCHANGE['max_json_depth']``) and
    no lone surrogates anywhere: a 400 in the API's error shape instead of a 500.

    The body is parsed first (the C decoder raises ``RecursionError`` rather than crash on
    very deep input), then walked once (``find_json_problem``). Only a body with a problem
    is measured on its raw text (``find_deep_nesting``, a regular expression over the whole
    body: most of the parser's time on a bulk broadcast), so that the answer is the same as
    when the text was measured first: too deep wins over a syntax error or a surrogate,
    named by its dotted keys."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = max_json_depth()
        raw = stream.read()
        try:
            data = super().parse(io.BytesIO(raw), media_type, parser_context)
            problem = find_json_problem(data, limit)
        except (ParseError, RecursionError) as exc:
            problem = exc
        if problem is None:
            return data
        text = raw.decode(get_encoding(parser_context or {}), errors="replace")
        field = find_deep_nesting(text, limit)
        if field is not None:
            raise ValidationError({field: [f"is nested deeper than {limit} levels"]})
        if isinstance(problem, RecursionError):
            raise ParseError(f"JSON parse error - nested deeper than {limit} levels") from None
        if isinstance(problem, ParseError):
            raise problem
        field, message = problem
        raise ValidationError({field: [message]})
