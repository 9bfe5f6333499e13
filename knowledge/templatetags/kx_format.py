"""How every page writes times and numbers (``{% load kx_format %}``): one format, in one place.

- ``{{ t|when }}``: ``2026-12-01 01:23:45 UTC`` in the site's zone, inside ``<time datetime>``;
  accepts datetimes and ISO 8601 strings; ``-`` for nothing.
- ``{{ x|num }}``: at most 3 decimals, trailing zeros dropped (``0.5``, ``0.123``, ``12``).
- ``{{ x|pct }}``: a share 0..1 as a percentage with one decimal (``42.5 %``).
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html

register = template.Library()

TIME_FORMAT = "%Y-%m-%d %H:%M:%S %Z"


def format_when(value) -> str:
    """The one text format of a moment (also for Python code that builds messages)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if not isinstance(value, datetime):
        return "-"
    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_default_timezone())
    return timezone.localtime(value).strftime(TIME_FORMAT)


@register.filter
def when(value):
    text = format_when(value)
    if text == "-":
        return text
    if isinstance(value, str):
        value = parse_datetime(value)
    return format_html('<time datetime="{}">{}</time>', value.isoformat(), text)


@register.filter
def num(value):
    if value is None or value == "":
        return "-"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return value
    text = f"{x:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@register.filter
def pct(value):
    if value is None or value == "":
        return "-"
    try:
        return f"{100 * float(value):.1f} %"
    except (TypeError, ValueError):
        return value
