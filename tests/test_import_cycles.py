"""No import cycles between the package's modules, function-level imports included.

A cycle held together by an import inside a function hides the dependency graph
(issue 12). Imports under ``if TYPE_CHECKING:`` do not count: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {
    "common": "rawsigma",
    "acquire": "rawsigma.acquire",
    "calib": "rawsigma.calib",
    "analysis": "rawsigma.analysis",
    "cli": "rawsigma.cli",
    "gui": "rawsigma.gui",
}
#: Cycles not yet broken, each a sorted group of modules. Remove an entry when it is.
KNOWN = [
    ["rawsigma._imread_stores", "rawsigma.imread"],
    [
        "rawsigma.analysis.noisecodec.containers",
        "rawsigma.analysis.noisecodec.containers_h5",
        "rawsigma.analysis.noisecodec.containers_tiff",
        "rawsigma.analysis.noisecodec.containers_zarr",
    ],
]


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for folder, package in PACKAGES.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(REPO / folder).with_suffix("").parts]
            name = ".".join([package] + [p for p in parts if p != "__init__"])
            mods[name] = (path, path.name == "__init__.py")
    return mods


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [target] + [f"{target}.{a.name}" for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> package modules it imports (packages' ``__init__`` left out: lazy)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, (path, is_package) in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(k)
            for n in ast.walk(tree)
            if isinstance(n, ast.If) and getattr(n.test, "id", None) == "TYPE_CHECKING"
            for k in ast.walk(n)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            for target in _targets(node, module, is_package):
                if target in mods and target != module and not mods[target][1]:
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_graph_sees_function_level_imports() -> None:
    graph = import_graph()
    # rawsigma.cli.score_cmd imports the runner inside a function only
    assert "rawsigma.analysis.scoring.runner" in graph["rawsigma.cli.score_cmd"]


def test_no_new_import_cycles() -> None:
    found = cycles(import_graph())
    new = [c for c in found if c not in KNOWN]
    assert not new, f"import cycles: {new}"
