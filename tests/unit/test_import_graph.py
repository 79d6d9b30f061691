"""The package's import graph, read from the source with ast: no loop, and the leaves stay leaves.

Every import counts, at module level or inside a function (a lazy import still ties two modules together);
imports under ``if TYPE_CHECKING:`` (never run) and under ``if __name__ == "__main__":`` (run only when the
module is the program, never when it is imported) do not. Before issue 18 this found the loop
engines/base -> residency -> diagnose -> engines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
PKG = Path(__file__).resolve().parents[2] / "healthchecks"


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = p
    return mods


def _skipped(tree: ast.Module) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` and ``if __name__ == "__main__":``."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = ast.unparse(node.test)
            if "TYPE_CHECKING" in test or test.replace("'", '"') == '__name__ == "__main__"':
                out |= {id(n) for n in ast.walk(node)}
    return out


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        skip = _skipped(tree)
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:  # ``from . import x`` imports the module x
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in mods else target)
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        graph[name] = {m for m in found if m in mods and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_the_cycle_finder_finds_a_loop() -> None:
    loop = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(loop) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_loop_in_the_package() -> None:
    graph = import_graph()
    assert len(graph) > 30 and "healthchecks.engines.base" in graph["healthchecks.engines"]
    assert cycles(graph) == [], "import loops (each group imports itself through the others)"


@pytest.mark.parametrize(("leaf", "allowed"), [
    ("healthchecks.verdicts", set()),
    ("healthchecks.dockerhost", set()),
    ("healthchecks.errors", set()),
    ("healthchecks.cli.common", {"healthchecks.errors"}),
    ("healthchecks.cli", set()),  # prepare-model runs in the vLLM venv: the package itself pulls nothing in
])
def test_leaves_import_nothing_above_them(leaf: str, allowed: set[str]) -> None:
    assert import_graph()[leaf] <= allowed


def test_the_package_map_names_every_module() -> None:
    """healthchecks/__init__.py's map: every module of the package is named there (by its file or folder)."""
    doc = (PKG / "__init__.py").read_text().split('"""')[1]
    missing = []
    for name in _modules():
        parts = name.split(".")[1:]
        if not parts:
            continue
        leaf = parts[-1] + ("/" if (PKG.joinpath(*parts) / "__init__.py").exists() else ".py")
        if leaf not in doc:
            missing.append(name)
    assert missing == []
