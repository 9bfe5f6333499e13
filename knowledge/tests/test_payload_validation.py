"""Payload validation: the fast validity check (jsonschema_rs) accepts and rejects exactly
what the Python validator does, and the errors a client reads are the Python validator's."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from knowledge.registry import KnowledgeType, PayloadError, registry

ODD_VALUES = [
    None, True, False, 0, 1, -1, 2, 1.0, 0.5, 1.5, -0.01, 10**30, "", "x", "é" * 500,
    "x" * 501, "low", [], ["x"], {}, {"a": 1},
]  # fmt: skip


def valid_value(schema: dict):
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "string":
        return "a subject"
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return 0.5
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    return {}


def payloads(kt: KnowledgeType):
    """A valid payload of the type, then each field missing, then each field odd."""
    props = kt.schema["properties"]
    base = {name: valid_value(schema) for name, schema in props.items()}
    yield base
    for name in props:
        yield {k: v for k, v in base.items() if k != name}
        for odd in ODD_VALUES:
            yield {**base, name: odd}
    yield {**base, "extra": object()}  # not JSON at all: the Python validator decides
    yield []
    yield "not an object"


def python_errors(kt: KnowledgeType, payload) -> dict[str, str] | None:
    """What the Python validator alone reports, as KnowledgeType.validate words it."""
    validator = Draft202012Validator(kt.schema)
    errors = list(validator.iter_errors(payload))
    if not errors:
        return None
    try:
        # the same wording path, forced through the Python validator
        object.__setattr__(kt, "_fast", None)
        kt.validate(payload)
    except PayloadError as exc:
        return exc.errors
    finally:
        kt.__post_init__()
    raise AssertionError("the Python validator found errors, validate() none")


@pytest.mark.parametrize("name", registry.names())
def test_every_type_accepts_and_rejects_what_the_python_validator_does(name):
    kt = registry[name]
    assert kt._fast is not None  # the built-in schemas take the fast path
    checked = 0
    for payload in payloads(kt):
        expected = python_errors(kt, payload)
        try:
            kt.validate(payload)
            got = None
        except PayloadError as exc:
            got = exc.errors
        assert got == expected, payload
        checked += expected is not None
    assert checked > len(kt.schema["properties"])  # the odd payloads were rejected


def test_a_schema_with_a_pattern_is_checked_in_python_alone():
    """A regular expression may mean different things to Python and Rust: such a schema
    never takes the fast path, and its errors still name the field."""
    kt = KnowledgeType(
        name="ticket",
        description="",
        schema={
            "type": "object",
            "properties": {"key": {"type": "string", "pattern": r"^[A-Z]+-\d+$"}},
            "required": ["key"],
        },
        decay=registry["risk_pattern"].decay,
        broadcast_by=(),
        interested=(),
        subject_fields=("key",),
    )
    assert kt._fast is None
    kt.validate({"key": "KX-14"})
    with pytest.raises(PayloadError) as exc:
        kt.validate({"key": "kx 14"})
    assert list(exc.value.errors) == ["payload.key"]
