"""No import cycle among the product modules, lazy imports inside functions included
(a cycle hidden in a function body still ties the two modules together)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "clients", "blocks", "tasks", "flows")


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def import_graph() -> dict[str, set[str]]:
    modules = {_module(p) for pkg in PACKAGES for p in (ROOT / pkg).glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name in modules:
        tree = ast.parse((ROOT / (name.replace(".", "/") + ".py")).read_text())
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def cycle_from(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A path start → … → start, if there is one (depth-first)."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for dep in graph[node]:
            if dep == start:
                return [*path, start]
            if dep not in seen:
                seen.add(dep)
                stack.append((dep, [*path, dep]))
    return None


def test_the_graph_sees_the_flows_imports() -> None:
    graph = import_graph()
    assert "flows.remediate_action" in graph["flows.reconciler"]  # a lazy import counts
    assert "flows.heartbeat" in graph["flows.remediate_action"]


def test_no_product_module_imports_itself_back() -> None:
    graph = import_graph()
    cycles = [c for m in sorted(graph) if (c := cycle_from(graph, m))]
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
