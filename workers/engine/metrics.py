"""Per-unit metrics of Python source, computed with ``ast`` (the code is never imported or run).

A *unit* is a function, a method, a class body or the module body. Each unit is measured on its
*own* code only: nested functions and classes are separate units and are excluded from their
parent's length, complexity, nesting and body hash. Results are path-independent, so they can be
cached by git blob sha.

Metric definitions (the contract issue rules rely on):

- ``length``: lines of the unit's own code: blank lines, comment-only lines, the docstring and
  the lines of nested defs/classes are not counted; the ``def`` line is.
- ``complexity`` (McCabe, as radon counts it): 1, +1 per ``if``/``elif``/ternary, loop, loop
  ``else``, ``except`` handler, ``assert``, non-wildcard ``case``, comprehension ``for`` and each
  comprehension ``if``, and +(n-1) per boolean operator with n operands.
- ``max_nesting``: deepest level of compound statements (``if``/``for``/``while``/``with``/
  ``try``/``match``); ``elif`` does not add a level, ``else: if`` does. 0 for straight-line code.
- ``arguments``: positional-only + positional + keyword-only parameters, without ``self``/``cls``
  of a method; ``*args``/``**kwargs`` are not counted.
- ``bare_excepts``: ``except:`` handlers. ``broad_excepts``: ``except Exception``/
  ``BaseException`` (also inside a tuple) whose body does not re-raise with a bare ``raise``.
- ``mutable_defaults``: parameter defaults that are list/dict/set displays or comprehensions, or
  calls to ``list()``, ``dict()``, ``set()``, ``defaultdict()``, ...
- ``body_hash``: sha1 of the unit's own code lines (stripped) and its children's names; it changes
  iff the unit's own code changes (not when lines above it shift, nor on comment/docstring-only
  edits, nor when only a nested function's body changes).
"""

from __future__ import annotations

import ast
import hashlib
import io
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass

MODULE_QUALNAME = "<module>"

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_MUTABLE_LITERALS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
_MUTABLE_FACTORIES = frozenset(
    {"list", "dict", "set", "bytearray", "defaultdict", "OrderedDict", "Counter", "deque"}
)
_BROAD_EXCEPTIONS = frozenset({"Exception", "BaseException"})


@dataclass(frozen=True, slots=True)
class UnitMetrics:
    """Metrics of one unit; ``kind`` is ``function``, ``method``, ``class`` or ``module``."""

    qualname: str
    kind: str
    lineno: int
    end_lineno: int
    length: int
    complexity: int
    max_nesting: int
    arguments: int
    returns: int
    methods: int
    bare_excepts: int
    broad_excepts: int
    mutable_defaults: int
    body_hash: str

    @property
    def is_function(self) -> bool:
        return self.kind in ("function", "method")


@dataclass(frozen=True, slots=True)
class FileMetrics:
    """All units of one file, in source order; ``error`` is set (and units empty) when unparsable."""

    units: tuple[UnitMetrics, ...]
    error: str | None = None


def decode_source(source: str | bytes) -> str:
    """Decode bytes as Python does (PEP 263 cookie or BOM, else UTF-8); undecodable bytes replaced."""
    if isinstance(source, str):
        return source
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)
    except SyntaxError:
        encoding = "utf-8"
    try:
        return source.decode(encoding, errors="replace")
    except LookupError:
        return source.decode("utf-8", errors="replace")


def measure_source(source: str | bytes) -> FileMetrics:
    """Measure every unit of a file. Never raises on bad source: returns ``FileMetrics(error=...)``."""
    text = decode_source(source)
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return FileMetrics(units=(), error=f"{type(exc).__name__}: {exc}")
    lines = text.splitlines()
    units: list[UnitMetrics] = []
    seen: dict[str, int] = {}
    try:
        _measure_unit(tree, MODULE_QUALNAME, "module", lines, units, seen)
    except RecursionError as exc:  # absurdly deep nesting: treat like unparsable
        return FileMetrics(units=(), error=f"RecursionError: {exc}")
    return FileMetrics(units=tuple(units))


def _unique(qualname: str, seen: dict[str, int]) -> str:
    # Conditional redefinitions (property setters, platform branches) share a qualname;
    # the 2nd, 3rd... get "#2", "#3" so fingerprints stay unique and stable.
    count = seen.get(qualname, 0) + 1
    seen[qualname] = count
    return qualname if count == 1 else f"{qualname}#{count}"


def _measure_unit(
    node: ast.AST,
    qualname: str,
    kind: str,
    lines: list[str],
    out: list[UnitMetrics],
    seen: dict[str, int],
) -> None:
    visitor = _UnitVisitor()
    body: list[ast.stmt] = getattr(node, "body", [])
    visitor.visit_block(body, 0)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        start, end = node.lineno, node.end_lineno or node.lineno
    else:  # the module
        start, end = 1, max(len(lines), 1)
    excluded = list(visitor.children_spans)
    doc = _docstring_span(body)
    if doc is not None:
        excluded.append(doc)
    own_lines = _own_code_lines(lines, start, end, excluded)
    arguments = mutable = 0
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        arguments = _count_arguments(node.args, is_method=kind == "method")
        mutable = _count_mutable_defaults(node.args)
    methods = sum(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) for s in body)
    out.append(
        UnitMetrics(
            qualname=qualname,
            kind=kind,
            lineno=start,
            end_lineno=end,
            length=len(own_lines),
            complexity=visitor.complexity,
            max_nesting=visitor.max_nesting,
            arguments=arguments,
            returns=visitor.returns,
            methods=methods if kind == "class" else 0,
            bare_excepts=visitor.bare_excepts,
            broad_excepts=visitor.broad_excepts,
            mutable_defaults=mutable,
            body_hash=_hash(own_lines, visitor.children),
        )
    )
    prefix = "" if kind == "module" else f"{qualname}."
    for child in visitor.children:
        child_kind = (
            "class"
            if isinstance(child, ast.ClassDef)
            else ("method" if kind == "class" else "function")
        )
        child_name = _unique(prefix + child.name, seen)
        _measure_unit(child, child_name, child_kind, lines, out, seen)


def _hash(own_lines: list[str], children: Sequence[ast.AST]) -> str:
    # Child names are included so adding/removing a method changes its class's hash.
    names = ",".join(getattr(c, "name", "") for c in children)
    text = "\n".join(own_lines) + "\x00" + names
    return hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()


def _docstring_span(body: list[ast.stmt]) -> tuple[int, int] | None:
    if body and isinstance(body[0], ast.Expr):
        value = body[0].value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return body[0].lineno, body[0].end_lineno or body[0].lineno
    return None


def _own_code_lines(
    lines: list[str], start: int, end: int, excluded: list[tuple[int, int]]
) -> list[str]:
    skip: set[int] = set()
    for lo, hi in excluded:
        skip.update(range(lo, hi + 1))
    own = []
    for number in range(start, min(end, len(lines)) + 1):
        if number in skip:
            continue
        stripped = lines[number - 1].strip()
        if stripped and not stripped.startswith("#"):
            own.append(stripped)
    return own


def _count_arguments(args: ast.arguments, *, is_method: bool) -> int:
    positional = [*args.posonlyargs, *args.args]
    count = len(positional) + len(args.kwonlyargs)
    if is_method and positional and positional[0].arg in ("self", "cls"):
        count -= 1
    return count


def _count_mutable_defaults(args: ast.arguments) -> int:
    defaults = [*args.defaults, *(d for d in args.kw_defaults if d is not None)]
    return sum(_is_mutable(d) for d in defaults)


def _is_mutable(node: ast.expr) -> bool:
    if isinstance(node, _MUTABLE_LITERALS):
        return True
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        return name in _MUTABLE_FACTORIES
    return False


def _is_broad(handler_type: ast.expr) -> bool:
    candidates = handler_type.elts if isinstance(handler_type, ast.Tuple) else [handler_type]
    for candidate in candidates:
        name = candidate.id if isinstance(candidate, ast.Name) else getattr(candidate, "attr", None)
        if name in _BROAD_EXCEPTIONS:
            return True
    return False


def _reraises(body: list[ast.stmt]) -> bool:
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Raise) and node.exc is None:
            return True
        if isinstance(node, (*_DEFS, ast.Lambda)):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return False


class _UnitVisitor:
    """Walks one unit's own statements; records nested defs/classes as children, not entering."""

    def __init__(self) -> None:
        self.complexity = 1
        self.max_nesting = 0
        self.returns = 0
        self.bare_excepts = 0
        self.broad_excepts = 0
        self.children: list[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef] = []
        self.children_spans: list[tuple[int, int]] = []

    def visit_block(self, stmts: list[ast.stmt], depth: int) -> None:
        if stmts and depth > self.max_nesting:
            self.max_nesting = depth
        for stmt in stmts:
            self.visit_stmt(stmt, depth)

    def visit_stmt(self, node: ast.stmt, depth: int) -> None:  # noqa: C901 - a dispatch table
        if isinstance(node, _DEFS):
            self.children.append(node)
            first = min([d.lineno for d in node.decorator_list] + [node.lineno])
            self.children_spans.append((first, node.end_lineno or node.lineno))
            return
        if isinstance(node, ast.If):
            self.complexity += 1
            self.visit_expr(node.test)
            self.visit_block(node.body, depth + 1)
            orelse = node.orelse
            if len(orelse) == 1 and isinstance(orelse[0], ast.If):
                if orelse[0].col_offset == node.col_offset:  # "elif": same level
                    self.visit_stmt(orelse[0], depth)
                    return
            self.visit_block(orelse, depth + 1)
        elif isinstance(node, _LOOPS):
            self.complexity += 1 + bool(node.orelse)
            if isinstance(node, ast.While):
                self.visit_expr(node.test)
            else:
                self.visit_expr(node.target)
                self.visit_expr(node.iter)
            self.visit_block(node.body, depth + 1)
            self.visit_block(node.orelse, depth + 1)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                self.visit_expr(item.context_expr)
            self.visit_block(node.body, depth + 1)
        elif isinstance(node, (ast.Try, ast.TryStar)):
            self.visit_block(node.body, depth + 1)
            for handler in node.handlers:
                self.complexity += 1
                if handler.type is None:
                    self.bare_excepts += 1
                else:
                    self.visit_expr(handler.type)
                    if _is_broad(handler.type) and not _reraises(handler.body):
                        self.broad_excepts += 1
                self.visit_block(handler.body, depth + 1)
            self.visit_block(node.orelse, depth + 1)
            self.visit_block(node.finalbody, depth + 1)
        elif isinstance(node, ast.Match):
            self.visit_expr(node.subject)
            for case in node.cases:
                wildcard = isinstance(case.pattern, ast.MatchAs) and case.pattern.pattern is None
                if not wildcard or case.guard is not None:
                    self.complexity += 1
                if case.guard is not None:
                    self.visit_expr(case.guard)
                self.visit_block(case.body, depth + 1)
        else:
            if isinstance(node, ast.Return):
                self.returns += 1
            elif isinstance(node, ast.Assert):
                self.complexity += 1
            self.visit_expr(node)

    def visit_expr(self, node: ast.AST) -> None:
        """Count decision points inside an expression (or a simple statement)."""
        for sub in ast.walk(node):
            if isinstance(sub, ast.BoolOp):
                self.complexity += len(sub.values) - 1
            elif isinstance(sub, ast.IfExp):
                self.complexity += 1
            elif isinstance(sub, ast.comprehension):
                self.complexity += 1 + len(sub.ifs)
