"""How the project's packages may import each other, read from the source (every import,
including those inside functions and under TYPE_CHECKING: an import moved into a function
to dodge a cycle is still a cycle).

- No import cycles between the project's modules.
- The levels are layers over `shared/`: level 0 imports no other level, level 1 knows nothing
  of level 2, no level imports `compare/`, and `shared/` imports no level.
- Every package the code (tests included) imports is declared in pyproject.toml, not only
  brought in by another one: `make lock` would drop it when that one stops needing it.
"""

from __future__ import annotations

import ast
import graphlib
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("shared", "level0_manual", "level1_ct", "level2_cicd", "compare", "bench")
LEVELS = ("level0_manual", "level1_ct", "level2_cicd")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The names an import statement imports, absolute (`from .x import y` resolved)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (the package `__init__`s on the way too: they
    run first)."""
    files = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {module: set() for module in files}
    for module, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in imported(node, module, path.name == "__init__.py"):
                parts = name.split(".")
                for end in range(1, len(parts) + 1):
                    target = ".".join(parts[:end])
                    if target in files and target != module:
                        graph[module].add(target)
    return graph


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of the graph ([] if none), as graphlib finds it."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return error.args[1]
    return []


def test_the_graph_sees_imports_inside_functions_and_under_type_checking(graph):
    """The reader itself: the edges the rules below depend on are there."""
    assert "level2_cicd.names" in graph["level2_cicd.flows.cd"]  # top level
    assert "level2_cicd.flows" in graph["level2_cicd.flows.cd"]  # its package
    assert "compare.served" in graph["compare.servers"]  # under TYPE_CHECKING
    assert "level1_ct.flows.training" in graph["level2_cicd.flows.cd"]
    cyclic = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(cycle(cyclic)) == ["a", "a", "b", "c"]
    source = "def f():\n    from .b import c\n"
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom))
    assert imported(node, "pkg.a", is_package=False) == ["pkg.b.c", "pkg.b"]


def test_no_import_cycles(graph):
    found = cycle(graph)
    assert found == [], f"modules that import each other: {' -> '.join(found)}"


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("shared", (*LEVELS, "compare", "bench")),
        ("level0_manual", ("level1_ct", "level2_cicd", "compare")),
        ("level1_ct", ("level2_cicd", "compare")),
        ("level2_cicd", ("compare",)),
    ],
)
def test_the_levels_are_layers(graph, package, forbidden):
    crossing = sorted(
        (source, target)
        for source, targets in graph.items()
        for target in targets
        if source.split(".")[0] == package and target.split(".")[0] in forbidden
    )
    assert crossing == [], f"{package} may not import {', '.join(forbidden)}: {crossing}"


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {canonical(re.split(r"[\[<>=!~ ;]", d)[0]) for d in project["dependencies"]}


def canonical(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def test_every_imported_package_is_declared():
    own = {*PACKAGES, "tests"}
    distributions, wanted = packages_distributions(), declared()
    undeclared = set()
    for package in (*PACKAGES, "tests"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                else:
                    continue
                for top in {name.split(".")[0] for name in names}:
                    if top in own or top in sys.stdlib_module_names:
                        continue
                    found = {canonical(d) for d in distributions.get(top, [top])}
                    if not found & wanted:
                        undeclared.add(f"{top} ({path.relative_to(ROOT)})")
    assert sorted(undeclared) == [], "imported but not in pyproject.toml's dependencies"
