"""The package's shape, read from its source with `ast`: no import cycle (type-only and function-level
imports included), and how long its functions are."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ablate"
MAX_FUNCTION_LINES = 80

# Edges a lazy re-export keeps only until other branches' files import from the new home (see the
# `__getattr__` block at the end of each importing module); each is removed with its block.
PENDING_MOVES: set[tuple[str, str]] = set()  # import edges being moved, none now


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from X import ...` names (relative levels resolved against the importer)."""
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every ablate module `name` imports anywhere in its source: at the top, under TYPE_CHECKING, inside
    functions, and by `importlib.import_module("<literal>")`. `from . import x` counts as importing the
    module `x` when it is one."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(name, path.name == "__init__.py", node)
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def _is_ancestor(package: str, module: str) -> bool:
    """A package's own __init__ is imported before any of its modules: that edge is not a cycle's."""
    return module.startswith(package + ".")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_sees_type_only_and_lazy_imports() -> None:
    graph = import_graph()
    assert "ablate.spec" in graph["ablate.planning"]  # under TYPE_CHECKING only
    assert "ablate.files" in graph["ablate.cli"]  # inside a function only
    assert "ablate.runner" in graph["ablate.startup_probe"]  # importlib.import_module("ablate.runner")
    assert "ablate.stats" in graph["ablate.planning"]  # `from . import stats`


def test_no_import_cycle() -> None:
    graph = {m: {t for t in targets if (m, t) not in PENDING_MOVES and not _is_ancestor(t, m)}
             for m, targets in import_graph().items()}
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, str, int]]:
    """(file, function, lines) of every function or method in ablate/ longer than `limit` lines
    (decorators and docstring included)."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = (node.end_lineno or node.lineno) - first + 1
                if lines > limit:
                    out.append((str(path.relative_to(PACKAGE.parent)), node.name, lines))
    return out


def test_no_function_over_80_lines() -> None:
    assert long_functions() == []


if __name__ == "__main__":  # python -m tests.test_architecture: the report behind the tests
    graph = import_graph()
    print("cycles, every import counted:", cycles({m: {t for t in ts if not _is_ancestor(t, m)}
                                                   for m, ts in graph.items()}) or "none")
    for file, function, lines in long_functions():
        print(f"{lines:4d} lines  {file}: {function}")
