"""DRF validation without DRF's per-field machinery, for plainly typed input (bulk items).

A bulk broadcast of 500 items spent most of its validation time in DRF's field machinery
(``run_validation`` → ``validate_empty_values`` → ``to_internal_value`` →
``run_validators``, per field, per item), not in the rules (docs/performance.md, "Bulk
broadcast in batches"). ``LeanValidator`` runs a serializer's own validation loop (DRF's
``Serializer.to_internal_value`` then ``validate``) with a shortcut per field for the value
shapes a JSON client sends: a string without surrounding whitespace, a number in range, a
boolean, a plain dict, a list of those. Everything else about a field (absent, null, a date,
a number sent as a string) goes through the field's own ``run_validation``.

The rules stay where they are declared, once: the limits (lengths, ranges, choices) are read
from the serializer's fields, and its ``validate_<field>`` methods and ``validate()`` are
called as DRF calls them. The shortcut only *recognises* valid input: when anything fails,
``LeanValidator`` answers ``None`` and the caller runs the serializer itself, so a rejected
item gets DRF's errors word for word (``knowledge/tests/test_lean_validation.py`` checks
that both agree on valid and invalid items).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import (
    MaxLengthValidator,
    MaxValueValidator,
    MinLengthValidator,
    MinValueValidator,
    ProhibitNullCharactersValidator,
)
from rest_framework import fields, serializers
from rest_framework.fields import SkipField, empty
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from knowledge.api.serializers import FiniteFloatField

#: A shortcut's answer when the value is not of a shape it recognises: the field decides.
NOT_PLAIN = object()

Shortcut = Callable[[object], object]

# The validators DRF adds to these fields itself, from their declared limits; a field with
# any other validator has no shortcut.
_TEXT_VALIDATORS = (
    MaxLengthValidator,
    MinLengthValidator,
    ProhibitNullCharactersValidator,
    ProhibitSurrogateCharactersValidator,
)
_NUMBER_VALIDATORS = (MaxValueValidator, MinValueValidator)
_LIST_VALIDATORS = (MaxLengthValidator, MinLengthValidator)


def _only(field: fields.Field, allowed: tuple[type, ...]) -> bool:
    return all(isinstance(v, allowed) for v in field.validators)


def _text(field: fields.CharField) -> Shortcut | None:
    """A string that DRF would return unchanged: ASCII (no surrogates), not blank, no NUL,
    no surrounding whitespace when the field trims it, within the length limits."""
    if not _only(field, _TEXT_VALIDATORS):
        return None
    longest = field.max_length if field.max_length is not None else math.inf
    shortest = max(field.min_length or 0, 1)  # "" is DRF's blank check
    trims = field.trim_whitespace

    def text(value):
        if (
            type(value) is str
            and shortest <= len(value) <= longest
            and value.isascii()
            and "\x00" not in value
            and (not trims or value.strip() == value)
        ):
            return value
        return NOT_PLAIN

    return text


def _choice(field: fields.ChoiceField) -> Shortcut | None:
    """One of the choices, spelled as declared."""
    if field.validators:
        return None
    choices = field.choice_strings_to_values

    def choice(value):
        if type(value) is str and value in choices:
            return choices[value]
        return NOT_PLAIN

    return choice


def _number(field: fields.FloatField) -> Shortcut | None:
    """A JSON number (not a boolean) that is finite and within the declared range."""
    if not _only(field, _NUMBER_VALIDATORS):
        return None
    low = field.min_value if field.min_value is not None else -math.inf
    high = field.max_value if field.max_value is not None else math.inf
    if callable(low) or callable(high):
        return None

    def number(value):
        # DRF's order: float() first, then the finite check and the range on the float
        kind = type(value)
        if kind is float or kind is int:
            try:
                value = float(value)
            except OverflowError:
                return NOT_PLAIN
            if math.isfinite(value) and low <= value <= high:
                return value
        return NOT_PLAIN

    return number


def _boolean(field: fields.BooleanField) -> Shortcut | None:
    if field.validators:
        return None
    return lambda value: value if type(value) is bool else NOT_PLAIN


def _dict(field: fields.DictField) -> Shortcut | None:
    """A dict with string keys, values unvalidated (DRF copies it, so do we)."""
    if field.validators or type(field.child) is not fields._UnvalidatedField:
        return None
    allow_empty = field.allow_empty

    def plain_dict(value):
        if type(value) is dict and (allow_empty or value):
            if all(type(key) is str for key in value):
                return dict(value)
        return NOT_PLAIN

    return plain_dict


def _list(field: fields.ListField) -> Shortcut | None:
    """A list of children the child's shortcut recognises, within the length limits."""
    child = shortcut(field.child)
    if child is None or not _only(field, _LIST_VALIDATORS):
        return None
    longest = field.max_length if field.max_length is not None else math.inf
    shortest = max(field.min_length or 0, 0 if field.allow_empty else 1)

    def plain_list(value):
        if type(value) is not list or not shortest <= len(value) <= longest:
            return NOT_PLAIN
        out = [child(item) for item in value]
        return NOT_PLAIN if any(item is NOT_PLAIN for item in out) else out

    return plain_list


# Exact classes only: a subclass may add rules of its own (``FiniteFloatField`` adds the
# finite check, which ``_number`` makes too).
SHORTCUTS: dict[type, Callable[..., Shortcut | None]] = {
    fields.CharField: _text,
    fields.ChoiceField: _choice,
    fields.FloatField: _number,
    FiniteFloatField: _number,
    fields.BooleanField: _boolean,
    fields.DictField: _dict,
    fields.ListField: _list,
}


def shortcut(field: fields.Field) -> Shortcut | None:
    """The shortcut for ``field``, or None (the field always validates itself)."""
    make = SHORTCUTS.get(type(field))
    return make(field) if make is not None else None


def _absent(field: fields.Field):
    """What DRF makes of ``field`` missing from the input (``validate_empty_values``): a
    function giving its default, ``SKIP`` (left out of the result), or None when DRF must
    say (a required field: an error; a default that needs its field)."""
    default = field.default
    if field.required or getattr(default, "requires_context", False):
        return None
    if default is empty:
        return SKIP
    if callable(default):
        return default
    return lambda: default


#: ``_absent``'s answer for a field left out of the validated data.
SKIP = object()


class LeanValidator:
    """``serializer.run_validation(data)`` for plainly typed input, or None.

    Returns the validated data DRF would return, or None when DRF must decide: the data is
    invalid (run the serializer for its errors) or of a shape the shortcuts do not cover.
    One instance serves every request (like the serializer it wraps, it keeps no state).
    """

    def __init__(self, serializer: serializers.Serializer):
        self.serializer = serializer
        self.steps = [
            (
                field.field_name,
                field,
                shortcut(field),
                _absent(field),
                getattr(serializer, f"validate_{field.field_name}", None),
            )
            for field in serializer._writable_fields
        ]
        # Serializer-level validators would need DRF's run_validators: none here.
        self.usable = not serializer.validators

    def __call__(self, data) -> dict | None:
        if not self.usable or type(data) is not dict:
            return None
        attrs = {}
        try:
            for name, field, fast, absent, method in self.steps:
                value = data.get(name, empty)
                if value is empty and absent is not None:
                    if absent is SKIP:
                        continue
                    value = absent()  # a default is not validated (DRF neither)
                elif fast is None or (value := fast(value)) is NOT_PLAIN:
                    try:
                        value = field.run_validation(data.get(name, empty))
                    except SkipField:
                        continue
                if method is not None:
                    value = method(value)
                attrs[name] = value
            return self.serializer.validate(attrs)
        except (serializers.ValidationError, DjangoValidationError):
            return None
