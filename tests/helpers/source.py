"""What ecgexp's source imports, read from the source (no module is imported)."""

import ast
from pathlib import Path


def imported_modules(path: Path, prefix: str = "ecgexp", on_import: bool = False) -> set[str]:
    """The modules of ``prefix`` that ``path`` imports (``from ecgexp.a import b`` counts
    ``ecgexp.a.b`` when that is a module); with ``on_import``, only the imports that run when
    the module is imported (those of its top level, not inside a function or class)."""
    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree)
    if on_import:
        nodes = [node for statement in tree.body if not isinstance(
            statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            for node in ast.walk(statement)]
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(prefix):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith(prefix)}
    return found
