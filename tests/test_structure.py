"""The package's structure, as the package docstring draws it: no import circle, no import from a lower
layer to a higher one, no source file over 400 lines, no function with more than 8 parameters."""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "robustdml"
# Highest first: a layer imports only from the layers after it. Shared modules sit below every layer.
LAYERS = ("cli", "reporting", "certify", "robustness", "engine", "defenses", "attacks", "evaluation", "losses", "models", "data")
SHARED = ("registry", "options", "files", "version", "console", "progress")
MAX_LINES, MAX_PARAMETERS = 400, 8


def _modules():
    modules = {}
    for path in SOURCE.rglob("*.py"):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(modules):
    """module -> the robustdml modules it imports (at module level or inside functions)."""
    edges = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("robustdml"):
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.startswith("robustdml")]
            for target in targets:
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != name:
                    edges[name].add(target)
    return edges


def _rank(module: str) -> int:
    """The layer's position (0 = highest); shared modules rank below every layer; the root package above all."""
    parts = module.split(".")
    if len(parts) == 1:
        return -1
    if parts[1] in SHARED:
        return len(LAYERS)
    return LAYERS.index(parts[1])


def test_every_module_belongs_to_a_layer():
    unknown = sorted({m.split(".")[1] for m in _modules() if "." in m} - set(LAYERS) - set(SHARED))
    assert not unknown, f"add {unknown} to the layer picture (package docstring and LAYERS here)"


def test_no_import_goes_up_a_layer():
    edges = _imports(_modules())
    upward = sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets if _rank(b) < _rank(a))
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_there_is_no_import_circle():
    edges = _imports(_modules())
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(_modules()):
        if module not in index:
            visit(module)
    assert not circles, f"import circles: {circles}"


@pytest.mark.parametrize("path", sorted(SOURCE.rglob("*.py")), ids=lambda p: str(p.relative_to(SOURCE)))
def test_files_are_short_and_functions_take_few_parameters(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{path.name} has {len(text.splitlines())} lines (at most {MAX_LINES})"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            count = (len(arguments.posonlyargs) + len(arguments.args) + len(arguments.kwonlyargs)
                     + bool(arguments.vararg) + bool(arguments.kwarg))
            if arguments.args and arguments.args[0].arg in ("self", "cls"):
                count -= 1
            assert count <= MAX_PARAMETERS, f"{path.name}: {node.name} takes {count} parameters"


def test_a_broken_rule_is_found():
    """The checks above can fail: an upward import and a circle in a toy graph are reported."""
    assert _rank("robustdml.attacks.x") > _rank("robustdml.robustness.y")  # attacks sit below robustness
    assert _rank("robustdml.registry") > _rank("robustdml.data.base")
