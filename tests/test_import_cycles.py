"""No import cycle among our own modules, counting imports inside functions too (CI runs this)."""

from __future__ import annotations

import ast
from pathlib import Path

from harness import ROOT

PACKAGES = ("schemas", "pipelines", "workers")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> our modules it imports (a name imported from a package counts as its submodule)."""

    def ours(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            for target in filter(None, map(ours, targets)):
                if target != module and not module.startswith(target + "."):
                    edges[module].add(target)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_of_ours_imports_itself_round_about():
    modules = _modules()
    assert len(modules) > 50
    assert _cycles(_imports(modules)) == []


ROOMS = ("runtime", "sources", "followups", "stages", "query", "ingress", "client", "http", "launcher", "bench", "cli")


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "workers" and len(parts) > 1 else None


def test_each_room_of_workers_imports_only_the_rooms_above_it():
    """The order the README's "How it works" lists them in: a newcomer reads downwards."""
    modules = _modules()
    assert {_room(m) for m in modules} - {None} == set(ROOMS)
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in _imports(modules).items()
        for target in targets
        if (a := _room(module)) and (b := _room(target)) and a != b and ROOMS.index(b) > ROOMS.index(a)
    )
    assert upward == []
