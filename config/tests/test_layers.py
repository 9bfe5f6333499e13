"""The layers of docs/architecture.md ("Layers"), checked on every module's imports.

Every project module is parsed with ``ast``; every ``import`` counts, at module level or inside
a function (an import inside a function is not a way around a cycle). The test fails on an
import from a higher layer and on any import cycle between modules. Tests, conftest files and
migrations are not checked (tests sit above everything they test).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
PACKAGES = (
    "config",
    "identity",
    "knowledge",
    "conflicts",
    "dashboard",
    "kx_sdk",
    "workers",
    "bench",
)

# Bottom up. A module may import modules of its own layer and of the layers below.
# The most specific prefix wins.
LAYERS: dict[str, int] = {
    "config": 0,  # settings, env readers, the product settings object
    "identity": 1,  # Worker, tokens, authentication, permissions
    "knowledge": 2,  # the core
    "conflicts": 3,
    "dashboard": 4,
    # The SDK, an installable client library (``pip install .``): it imports nothing from the
    # rest of the project (SDK_OWN_IMPORTS), only the standard library and ``websockets``.
    "kx_sdk": 5,
    "workers": 5,  # the clients: built-in workers on the SDK, the in-process transport, commands
    # The composition root wires every app together.
    "config.urls": 6,
    "config.asgi": 6,
    "config.wsgi": 6,
    "bench": 7,  # benchmarks may drive anything, the composition root included
}

# The clients reach the core only through the SDK's transports: what else in ``workers`` may
# import from the server side (layers 1-4). The engine is pure Python and imports no project
# module outside ``workers.engine``.
CLIENT_SERVER_DOORS: dict[str, set[str]] = {
    # The in-process transport is the server side of the SDK.
    "workers.inprocess": {"identity", "knowledge", "conflicts"},
    # Commands and the built-in fleet register identities and projects before they run.
    "workers.management.commands.run_worker": {"identity"},
    "workers.management.commands.run_workers": {"identity"},
    # The history replay runs the fleet in-process and counts, for its report, the items
    # and conflicts the run left in the database.
    "workers.builtin.replay": {"identity", "knowledge", "conflicts"},
    "workers.management.commands.replay_history": {"knowledge"},
}
SERVER_LAYERS = {"identity", "knowledge", "conflicts", "dashboard"}
# What the SDK may import besides itself: the standard library and its optional extra.
SDK_THIRD_PARTY = {"websockets"}

# Known violations another change removes. Each entry must still exist (the test fails when
# one is gone, so the list only shrinks): delete the entry in the change that fixes it.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()
# (Issue 9's knowledge.actions <-> conflicts.actions cycle is gone: conflicts plugs into the
# broadcast through knowledge/hooks.py.)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_checked(path: Path) -> bool:
    parts = path.relative_to(ROOT).parts
    return not (
        "tests" in parts
        or "migrations" in parts
        or path.name == "conftest.py"
        or path.name.startswith("test_")
    )


def project_modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if _is_checked(path):
                out[_module_name(path)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` refers to (the longest existing prefix), or None."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the submodule when there is one.
            names = [f"{base}.{alias.name}" for alias in node.names] or [base]
            names = [n if _resolve(n, modules) == n else base for n in names]
        else:
            continue
        for name in names:
            target = _resolve(name, modules)
            if target is not None and target != module:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def layer_of(module: str) -> tuple[str, int]:
    name = module
    while name:
        if name in LAYERS:
            return name, LAYERS[name]
        name = name.rpartition(".")[0]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def _top(module: str) -> str:
    return module.partition(".")[0]


def violations(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    out = set()
    for module, targets in graph.items():
        _, level = layer_of(module)
        for target in targets:
            if layer_of(target)[1] > level:
                out.add((module, target))
            elif _top(module) == "kx_sdk" and _top(target) != "kx_sdk":
                out.add((module, target))  # the SDK is installed alone: nothing else is there
            elif _top(module) == "workers" and _top(target) in SERVER_LAYERS:
                doors = CLIENT_SERVER_DOORS.get(module, set())
                if _top(target) not in doors:
                    out.add((module, target))
            elif module.startswith("workers.engine") and not target.startswith("workers.engine"):
                out.add((module, target))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _cycle_edges(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    edges = set()
    for component in cycles(graph):
        members = set(component)
        edges |= {(m, t) for m in component for t in graph[m] if t in members}
    return edges


def test_every_module_is_in_a_layer():
    for module in import_graph():
        layer_of(module)


def test_no_module_imports_from_a_higher_layer():
    found = violations(import_graph()) - KNOWN_VIOLATIONS
    assert not found, "upward imports (docs/architecture.md, Layers):\n" + "\n".join(
        f"  {m} -> {t}" for m, t in sorted(found)
    )


def test_no_import_cycle():
    graph = import_graph()
    found = _cycle_edges(graph) - KNOWN_VIOLATIONS
    assert not found, "import cycles, edges inside them:\n" + "\n".join(
        f"  {m} -> {t}" for m, t in sorted(found)
    )


def test_known_violations_still_exist():
    """A fixed violation must leave KNOWN_VIOLATIONS, so the list only shrinks."""
    graph = import_graph()
    still = violations(graph) | _cycle_edges(graph)
    gone = KNOWN_VIOLATIONS - still
    assert not gone, f"fixed, remove from KNOWN_VIOLATIONS: {sorted(gone)}"


def test_the_sdk_imports_only_the_standard_library_and_its_extra():
    """``pip install .`` installs ``kx_sdk`` alone, with no required dependency: Django, the
    server's apps and anything else not in the standard library would fail on import there."""
    found = set()
    for path in sorted((ROOT / "kx_sdk").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names | SDK_THIRD_PARTY | {"kx_sdk"}:
                    found.add((path.relative_to(ROOT).as_posix(), name))
    assert not found, f"kx_sdk imports outside the standard library: {sorted(found)}"


def test_the_checker_sees_imports_inside_functions_and_cycles(tmp_path):
    """The checker itself: an import inside a function counts, and a two-module cycle is found."""
    src = "def f():\n    from knowledge import relay\n    import dashboard.metrics\n"
    path = tmp_path / "m.py"
    path.write_text(src)
    modules = {"knowledge.relay": path, "dashboard.metrics": path, "knowledge": path}
    assert imports_of("knowledge.x", path, modules) == {"knowledge.relay", "dashboard.metrics"}
    assert violations({"knowledge.x": {"dashboard.metrics"}}) == {
        ("knowledge.x", "dashboard.metrics")
    }
    assert violations({"kx_sdk.worker": {"workers.inprocess", "kx_sdk.errors"}}) == {
        ("kx_sdk.worker", "workers.inprocess")
    }
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
