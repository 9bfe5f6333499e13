"""Generators of Python source with exact metrics, for boundary tests."""

from __future__ import annotations


def function_of_length(name: str, length: int, *, indent: str = "") -> str:
    """A function whose own code is exactly ``length`` lines (def line included, >= 2)."""
    assert length >= 2
    body = [f"{indent}    x{i} = {i}" for i in range(length - 2)]
    return "\n".join([f"{indent}def {name}():", *body, f"{indent}    return 0"]) + "\n"


def function_of_complexity(name: str, complexity: int) -> str:
    """A function with McCabe complexity ``complexity`` (``complexity - 1`` plain ifs)."""
    lines = [f"def {name}(x):"]
    lines += [f"    if x == {i}:\n        x += 1" for i in range(complexity - 1)]
    lines.append("    return x")
    return "\n".join(lines) + "\n"


def function_of_nesting(name: str, depth: int) -> str:
    """A function whose deepest statement sits ``depth`` compound statements deep."""
    lines = [f"def {name}(x):"]
    for level in range(depth):
        lines.append("    " * (level + 1) + f"if x > {level}:")
    lines.append("    " * (depth + 1) + "x += 1")
    lines.append("    return x")
    return "\n".join(lines) + "\n"


def function_with_arguments(name: str, count: int) -> str:
    params = ", ".join(f"a{i}" for i in range(count))
    return f"def {name}({params}):\n    return 0\n"


def function_with_returns(name: str, count: int) -> str:
    lines = [f"def {name}(x):"]
    lines += [f"    if x == {i}:\n        return {i}" for i in range(count - 1)]
    lines.append("    return -1")
    return "\n".join(lines) + "\n"


def class_with_methods(name: str, count: int) -> str:
    methods = "".join(f"    def m{i}(self):\n        return {i}\n" for i in range(count))
    return f"class {name}:\n{methods}"
