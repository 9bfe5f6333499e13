"""docs/sdk.md against the package (issue 15): every public name of ``kx_sdk``, and every public
method and attribute of its classes, has a docstring and is in the reference."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import kx_sdk

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = (ROOT / "docs" / "sdk.md").read_text()


def public_members(cls: type) -> dict[str, object]:
    """Public names a class of the SDK defines itself or inherits from another SDK class (not
    from ``object`` or ``Exception``)."""
    out: dict[str, object] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith("kx_sdk"):
            out.update({k: v for k, v in vars(klass).items() if not k.startswith("_")})
    return out


def documented(name: str) -> bool:
    """``name`` appears in the reference as code: `name`, `name(...)`, `Class.name`."""
    return re.search(rf"`(?:[\w.]+\.)?{re.escape(name)}[`(]", REFERENCE) is not None


def has_docstring(cls: type, name: str, value: object) -> bool:
    if callable(value) or isinstance(value, property | staticmethod | classmethod):
        return bool(inspect.getdoc(getattr(cls, name)))
    return True  # a data attribute: its meaning is in the reference (checked there)


@pytest.mark.parametrize("name", kx_sdk.__all__)
def test_every_exported_name_is_documented_with_a_docstring(name):
    obj = getattr(kx_sdk, name)
    assert documented(name), f"docs/sdk.md does not document {name}"
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert obj.__doc__ and obj.__doc__.strip(), f"kx_sdk.{name} has no docstring"


@pytest.mark.parametrize(
    "cls", [getattr(kx_sdk, n) for n in kx_sdk.__all__ if inspect.isclass(getattr(kx_sdk, n))]
)
def test_every_public_method_and_attribute_of_a_class_is_documented(cls):
    members = public_members(cls)
    no_doc = sorted(n for n, v in members.items() if not has_docstring(cls, n, v))
    missing = sorted(n for n in members if not documented(n))
    assert not no_doc, f"{cls.__name__}: no docstring: {no_doc}"
    assert not missing, f"{cls.__name__}: not in docs/sdk.md: {missing}"


def test_the_version_is_documented_and_is_the_distributions():
    assert re.fullmatch(r"\d+\.\d+\.\d+", kx_sdk.__version__)
    assert "`kx_sdk.__version__`" in REFERENCE
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'version = { attr = "kx_sdk.__version__" }' in pyproject  # one place for it


def test_the_checker_sees_an_undocumented_method():
    """The check itself can fail: a method that is neither in the reference nor has a
    docstring is reported."""

    class Probe(kx_sdk.BaseWorker):
        __module__ = "kx_sdk.probe"

        def frobnicate_the_widget(self):
            pass

    members = public_members(Probe)
    assert "frobnicate_the_widget" in members
    assert not documented("frobnicate_the_widget")
    assert not has_docstring(Probe, "frobnicate_the_widget", members["frobnicate_the_widget"])
