"""The package's import graph has no circles, counting imports inside functions too: a module
that reaches back into one that imports it is a circle even when it defers the import."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pnl_da"


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def absolute_module(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The module a ``from ... import`` names, relative ones (``from .x import y``) resolved."""
    if node.level == 0:
        return node.module
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    base = package[:len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package modules it imports (``from pnl_da.x import y`` counts as an
    import of ``pnl_da.x.y`` where that is a module, else of ``pnl_da.x``)."""
    modules = {module_name(p, package): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = absolute_module(name, path, node)
                targets = [f"{base}.{alias.name}" for alias in node.names]
                targets = [t if t in modules else base for t in targets]
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_circles():
    found = cycles(import_graph())
    assert not found, f"import circles: {found}"


def test_the_check_sees_a_circle_through_a_deferred_import(tmp_path):
    package = tmp_path / "pnl_da"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pnl_da import b\n")
    (package / "b.py").write_text("def f():\n    from pnl_da.a import g\n")
    (package / "c.py").write_text("import pnl_da.a\n")
    assert cycles(import_graph(package)) == [["pnl_da.a", "pnl_da.b"]]


def test_the_check_resolves_relative_imports(tmp_path):
    package = tmp_path / "pnl_da"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import x\n")
    (package / "sub" / "x.py").write_text("from ..y import f\n")
    (package / "y.py").write_text("def f():\n    from .sub import x\n")
    assert cycles(import_graph(package)) == [["pnl_da.sub.x", "pnl_da.y"]]



def test_only_the_methods_name_a_method():
    """A method's knowledge lives in its class (pnl_da/methods/): no other module spells a
    method's name, so that a new method is one file and one config. Allowed: the alignment
    kinds PNL stacks (choice.Align) and compare's default list of methods (cli)."""
    from pnl_da.methods import METHODS

    allowed = {("choice.py", "dann"), ("choice.py", "cdan"),
               *(("cli.py", name) for name in ("source_only", "dann", "cdan", "pnl"))}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "methods" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Constant) and node.value in METHODS
                    and (str(path.relative_to(PACKAGE)), node.value) not in allowed):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}")
    assert not found, found
