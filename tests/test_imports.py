"""Dependencies point one way: no import circle among the package's modules, counting imports
inside functions too."""

import ast
from pathlib import Path

import ecgexp

PACKAGE = Path(ecgexp.__file__).parent


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(
        ".__init__")


def imported_modules(path: Path) -> set[str]:
    """The ecgexp modules ``path`` imports (``from ecgexp.a import b`` counts ``ecgexp.a.b``
    when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ecgexp"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("ecgexp")}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: (imported_modules(path) & set(modules)) - {name}
            for name, path in modules.items()}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (a path that returns to its start), or None."""
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = "open"
        for dependency in sorted(graph[name]):
            if state.get(dependency) == "open":
                return path[path.index(dependency):] + [dependency]
            if dependency not in state:
                circle = visit(dependency, path + [dependency])
                if circle:
                    return circle
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state:
            circle = visit(name, [name])
            if circle:
                return circle
    return None


def test_the_finder_sees_a_circle():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert {"ecgexp.train", "ecgexp.evaluate", "ecgexp.tracking"} <= set(graph)
    assert "ecgexp.data.build" in graph["ecgexp.train"]
    assert find_circle(graph) is None, " -> ".join(find_circle(graph))
