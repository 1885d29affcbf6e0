"""The package's shape: no import cycle, MLflow behind one module, a light serving path."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import shipyard

SRC = Path(shipyard.__file__).parent


def _modules() -> dict[str, Path]:
    found = {"shipyard": SRC / "__init__.py"}
    for info in pkgutil.walk_packages([str(SRC)], prefix="shipyard."):
        if info.name.startswith("shipyard.resources"):
            continue  # files shipped as data (MLflow's loader), not part of the package graph
        path = SRC.joinpath(*info.name.split(".")[1:])
        found[info.name] = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every shipyard module ``path`` imports, at any depth (lazy imports inside functions
    count: they run too), except under ``if TYPE_CHECKING:``."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                out.update(a.name for a in child.names if a.name in modules)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:
                    full = f"{child.module}.{alias.name}"
                    if full in modules:
                        out.add(full)
                    elif child.module in modules:
                        out.add(child.module)
            visit(child)

    visit(ast.parse(path.read_text()))
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def test_no_import_cycle_between_shipyard_modules():
    modules = _modules()
    assert {"shipyard.workspace", "shipyard.promotion", "shipyard.project"} <= set(modules)
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    # the package root is imported first by everything; its own lazy names are strings
    assert _cycle(graph) is None, " → ".join(_cycle(graph) or [])
    assert "shipyard.workspace" in graph["shipyard.project"]
    assert "shipyard.project" not in graph["shipyard.promotion"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # it can fail


def test_only_tracking_imports_mlflow():
    offenders = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "mlflow" or n.startswith("mlflow.") for n in names):
                offenders.append(name)
    assert set(offenders) == {"shipyard.tracking"}


def test_the_serving_path_and_rollback_import_neither_pandas_nor_mlflow():
    code = (
        "import sys\n"
        "import shipyard.serving.app, shipyard.serving.router, shipyard.serving.log\n"
        "import shipyard.serving.schema, shipyard.serving.shadow, shipyard.serving.metrics\n"
        "import shipyard.workspace, shipyard.registry, shipyard.promotion, shipyard.cli\n"
        "print(sorted(m for m in ('pandas', 'mlflow', 'sklearn', 'lightgbm') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_no_tracked_file_is_ignored():
    """A tracked file under an ignore rule (bench/results/ was) is silently left out of
    `git add -A`; every tracked file must stay visible to git."""
    root = SRC.parent.parent
    if not (root / ".git").exists():
        import pytest

        pytest.skip("not a git checkout")
    ignored = subprocess.run(
        ["git", "ls-files", "--cached", "--ignored", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert ignored == []
    tracked = subprocess.run(
        ["git", "ls-files", "bench/results"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "bench/results/check_flights.json" in tracked
