"""Each level's names (flows, deployments, aliases, events, images) are defined once, in its
leaf module (level1_ct/names.py, level2_cicd/names.py): the modules import nothing of the
project, and no other module of the project writes one of their names as a string."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from level1_ct import names as level1
from level2_cicd import names as level2
from tests.unit.infrastructure.test_imports import PACKAGES, ROOT, import_graph, module_name

LEAVES = {"level1_ct.names": level1, "level2_cicd.names": level2}
# Words that name something else too ("champion" is also an arm of production's rollout,
# "production" and "staging" are common words): the distinctive names are checked.
COMMON = {"champion", "challenger", "canary", "candidate", "staging", "production", "ci", "cd"}


def defined(module) -> dict[str, str]:
    values = {}
    for name, value in vars(module).items():
        if name.isupper() and isinstance(value, str):
            values[value] = name
        if name.isupper() and isinstance(value, dict):
            values |= {v: f"{name}[{k!r}]" for k, v in value.items() if isinstance(v, str)}
    return values


def strings(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module that are not docstrings, with their lines."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and id(node) not in docstrings
    ]  # fmt: skip


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_the_names_modules_are_leaves(leaf):
    assert import_graph()[leaf] == set()


def test_no_module_restates_a_name_the_names_modules_define():
    names = {value: f"{leaf}.{name}" for leaf, module in LEAVES.items()
             for value, name in defined(module).items() if value not in COMMON}  # fmt: skip
    assert {"ct-training", "churn.drift.detected", "level2-cd", "level2-serving"} <= set(names)
    restated = [
        f"{path.relative_to(ROOT)}:{line}: {value!r} is {names[value]}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if module_name(path) not in LEAVES
        for line, value in strings(path)
        if value in names
    ]
    assert restated == []
