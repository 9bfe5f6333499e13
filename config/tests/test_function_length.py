"""No function over 80 lines outside tests, migrations and benches (issue 9): a long function is
where a second copy of a rule hides. ``KNOWN_LONG`` lists the ones not yet split; it may only
shrink (a function that got shorter must leave the list, so the list stays true)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 80
SKIP_PARTS = {"tests", "migrations", "node_modules", ".venv", "bench"}

# (path, function): still over the limit; split them and remove them from here.
KNOWN_LONG: set[tuple[str, str]] = set()


def long_functions() -> dict[tuple[str, str], int]:
    found = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if SKIP_PARTS & set(rel.parts) or rel.name.startswith("."):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(rel))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > LIMIT:
                    found[(rel.as_posix(), node.name)] = length
    return found


def test_no_new_function_over_the_limit():
    found = long_functions()
    new = {key: n for key, n in found.items() if key not in KNOWN_LONG}
    assert not new, f"functions over {LIMIT} lines (split them): {new}"


def test_the_list_of_long_functions_is_current():
    gone = KNOWN_LONG - set(long_functions())
    assert not gone, f"no longer over {LIMIT} lines, remove from KNOWN_LONG: {sorted(gone)}"
