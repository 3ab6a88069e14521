"""The import structure CONTRIBUTING.md describes: tools may import the library, never the reverse;
no import cycle between the package's modules."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mmcourse"


def _imports() -> dict[str, set[str]]:
    """Module name -> the mmcourse modules it imports (anywhere in the file)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("mmcourse")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mmcourse"):
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = found
    return {m: {i for i in found if i in graph and i != m} for m, found in graph.items()}


def test_the_library_never_imports_the_tools():
    wrong = {m: sorted(i for i in found if i.startswith("mmcourse.tools"))
             for m, found in _imports().items()
             if not m.startswith("mmcourse.tools") and m != "mmcourse.__main__"}
    assert not {m: i for m, i in wrong.items() if i}, "library modules importing mmcourse.tools"


def test_no_import_cycle():
    graph = _imports()
    for m in graph:  # a package imports its own submodules, which is not a cycle
        graph[m] = {i for i in graph[m] if not (i.startswith(m + ".") or m.startswith(i + "."))}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join(path + [module, nxt])
            if nxt not in state:
                visit(nxt, path + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
