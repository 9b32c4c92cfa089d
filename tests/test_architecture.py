"""The shape of the code: imports point down, no import circles, honest public surfaces.

Layers, bottom to top (a package may import its own modules and lower layers only; the two
packages of one layer do not import each other, so an edge device needs none of the hub)::

    wire  <  core  <  gateway, storage  <  api  <  metalldaten

Modules are found by walking the package folders and read with ``ast`` (nothing is imported), so
the test holds for any module layout inside the packages. Imports under ``if TYPE_CHECKING:`` and
inside functions count: they are dependencies too, and a circle hidden behind them is still a circle.
"""

from __future__ import annotations

import ast
import importlib
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LAYERS: dict[str, int] = {"wire": 0, "core": 1, "gateway": 2, "storage": 2, "api": 3, "metalldaten": 4}

#: Import circles not broken yet, as sets of module names. Each must still exist (a stale entry fails,
#: so that the list only shrinks). The rollup keepers reach into their store's connection and lock.
KNOWN_CIRCLES: list[frozenset[str]] = []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover() -> dict[str, Path]:
    """Every module of our packages: ``{dotted name: file}``."""
    found: dict[str, Path] = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            if all((d / "__init__.py").exists() for d in path.relative_to(ROOT).parents if d != Path(".")):
                found[_module_name(ROOT / path.relative_to(ROOT))] = path
    return found


MODULES = discover()


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, target] if target else base)


def imports_of(module: str) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for every import of ours in ``module``, names resolved to submodules."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield (sub if sub in MODULES else base), node.lineno


def _ours(name: str) -> str | None:
    """The module of ours that ``name`` refers to (the longest known prefix), or None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for name, _ in imports_of(module):
            target = _ours(name)
            if target is not None and target != module:
                edges[module].add(target)
    return edges


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm (iterative): the components of more than one module, or of one importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[set[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    out.append(component)
    return out


def test_every_package_is_found() -> None:
    assert set(LAYERS) <= set(MODULES), "a package folder is missing"
    assert len(MODULES) > 50


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_imports_point_down(package: str) -> None:
    rank = LAYERS[package]
    wrong: list[str] = []
    for module in (m for m in MODULES if m.split(".")[0] == package):
        for name, line in imports_of(module):
            top = name.split(".")[0]
            if top in LAYERS and top != package and LAYERS[top] >= rank:
                wrong.append(f"{MODULES[module].relative_to(ROOT)}:{line} imports {name}")
    assert not wrong, f"{package} (layer {rank}) may only import lower layers:\n  " + "\n  ".join(wrong)


def test_no_import_circles() -> None:
    circles = strongly_connected(graph())
    unknown = [sorted(c) for c in circles if frozenset(c) not in KNOWN_CIRCLES]
    assert not unknown, f"import circles: {unknown}"
    stale = [sorted(k) for k in KNOWN_CIRCLES if k not in {frozenset(c) for c in circles}]
    assert not stale, f"these circles are gone; delete them from KNOWN_CIRCLES: {stale}"


def test_the_circle_finder_finds_circles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert sorted(map(sorted, strongly_connected(edges))) == [["a", "b", "c"], ["e"]]


# -- public surfaces ------------------------------------------------------------------------------

PACKAGES = sorted(m for m, p in MODULES.items() if p.name == "__init__.py")


def _public_names(module: types.ModuleType) -> list[str]:
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_exported_members(package: str) -> None:
    """``__all__`` of a package lists exactly its public names, and each can be imported.

    Every top-level package must say what it offers; a sub-package that defines ``__all__`` is held to it.
    """
    module = importlib.import_module(package)
    exported = getattr(module, "__all__", None)
    if exported is None:
        assert "." in package, f"{package} has no __all__"
        return
    assert len(set(exported)) == len(exported), f"{package}.__all__ names something twice"
    assert sorted(exported) == sorted(_public_names(module)), f"{package}.__all__ is not its public names"
    for name in exported:
        assert getattr(module, name, None) is not None, f"{package}.{name} cannot be imported"
