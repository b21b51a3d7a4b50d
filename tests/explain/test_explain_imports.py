"""lungcad.explain takes a model duck-typed: it imports neither the loader nor the Python API
above it (tests/architecture/test_layout.py checks every layer; this names explain's own)."""

from __future__ import annotations

import ast
from pathlib import Path

import lungcad.explain

MODEL_MODULES = ("lungcad.inference", "lungcad.api", "lungcad")


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_explain_does_not_import_the_loader_or_the_api():
    folder = Path(lungcad.explain.__file__).parent
    for name in ("__init__", "saliency", "files", "render", "localisation", "defaults"):
        imported = imported_modules(folder / f"{name}.py")
        assert not imported & set(MODEL_MODULES), (name, imported & set(MODEL_MODULES))
