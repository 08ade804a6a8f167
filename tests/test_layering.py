"""Imports point one way, data <- agents <- suite (SPEC section 2): read from the source with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bench"


def imported_modules(source: str, path: Path) -> set[str]:
    """Every module the source of `path` imports, function-level imports included, as dotted names.

    `from X import name` counts as both X and X.name, since `name` may be a submodule (`from bench import agents`).
    """
    modules = set()
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[: -node.level])
                base = f"{package}.{base}" if base else package
            modules.add(base)
            modules.update(f"{base}.{alias.name}" for alias in node.names)
    return modules


def reaching(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if m == package or m.startswith(f"{package}."))


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [("data", ("bench.agents", "bench.suite")), ("agents", ("bench.suite",))],
)
def test_lower_layers_never_import_higher_ones(layer: str, forbidden: tuple[str, ...]) -> None:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files
    offending = {}
    for path in files:
        modules = imported_modules(path.read_text(), path)
        if found := [m for package in forbidden for m in reaching(modules, package)]:
            offending[str(path.relative_to(PACKAGE.parent))] = found
    assert offending == {}


def test_the_reader_sees_function_level_relative_and_package_imports() -> None:
    source = "def f():\n    from bench.agents.sac import SAC\n\nfrom .. import suite\nfrom bench import agents\n"
    modules = imported_modules(source, PACKAGE / "data" / "example.py")
    assert reaching(modules, "bench.agents") == ["bench.agents", "bench.agents.sac", "bench.agents.sac.SAC"]
    assert reaching(modules, "bench.suite") == ["bench.suite"]
    assert reaching(imported_modules("import bench.suite.recipe as recipe\n", PACKAGE / "x.py"), "bench.suite") == [
        "bench.suite.recipe"
    ]
