"""The package layout is the architecture: layers import only downwards, and nothing cycles.

Read from the source with `ast` (no imports executed), so a violation is caught even in a
function-level import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rollup"

# Lowest first. A module may import its own layer or any layer below it, never above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("rollup.errors",),
    ("rollup.timeframes", "rollup.specs"),
    ("rollup.transforms",),
    ("rollup.settings", "rollup.adapters"),
    ("rollup.spark",),
    ("rollup.storage",),
    ("rollup.ingestion", "rollup.incremental"),
    ("rollup.operations",),
    ("rollup.readers",),
    ("rollup.deploy", "rollup.benchmarks", "rollup.demo"),
    ("rollup.cli",),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_only(tree: ast.Module) -> set[int]:
    """Ids of the import nodes under `if TYPE_CHECKING:` (not imported at run time)."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(child) for child in ast.walk(node))
    return hidden


def _imports(path: Path, modules: set[str], runtime_only: bool) -> set[str]:
    """The rollup modules `path` imports, anywhere in the file (function bodies included).

    `from rollup.a import b` counts as `rollup.a.b` when that is a module, else `rollup.a`.
    """
    tree = ast.parse(path.read_text(), str(path))
    hidden = _type_only(tree) if runtime_only else set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return {name for name in found if name in modules}


def _graph(runtime_only: bool = False) -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    names = set(paths)
    return {name: _imports(path, names, runtime_only) - {name} for name, path in paths.items()}


def _layer(module: str) -> int | None:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in _graph() if m != "rollup" and _layer(m) is None)
    assert not unplaced, f"modules outside every layer of LAYERS: {unplaced}"


def test_no_module_imports_a_higher_layer() -> None:
    upward = []
    for module, deps in sorted(_graph().items()):
        rank = _layer(module)
        if rank is None:
            continue
        for dep in sorted(deps):
            dep_rank = _layer(dep)
            if dep_rank is not None and dep_rank > rank:
                upward.append(f"{module} -> {dep}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    graph = _graph(runtime_only=True)
    graph.pop("rollup", None)  # the package root only re-exports the public API
    for deps in graph.values():
        deps.discard("rollup")
    cycles = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("folder", ["jobs", "flows"])
def test_jobs_and_flows_do_not_touch_sys_path(folder: str) -> None:
    root = PACKAGE.parents[1] / folder
    offenders = [p.name for p in root.glob("*.py") if "sys.path" in p.read_text()]
    assert not offenders, f"{folder}/ files that edit sys.path: {offenders}"
