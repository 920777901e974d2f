"""The codebase's shape: no import cycles, modules of one idea, names written once, models that load.

The import graph is read from the source (AST), imports inside functions included, so a cycle
cannot hide behind a deferred import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("tsn_keras", "tfrecords_tools")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports (a package import counts as its ``__init__``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    # Importing a.b runs a/__init__ first: a package's own submodules do not import "back" into it.
    for name in graph:
        graph[name] = {target for target in graph[name] if not name.startswith(target + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    assert _cycles(_graph()) == []


def test_the_converter_layer_never_imports_the_training_layer():
    graph = _graph()
    upward = {(name, target) for name, targets in graph.items() if name.startswith("tfrecords_tools")
              for target in targets if target.startswith("tsn_keras")}
    assert upward == set()


def test_library_modules_hold_one_idea_each():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_name_lists_are_defined_once():
    """No module but the vocabulary (and the shard schema it re-exports) assigns a name list of its own."""
    from tsn_keras import vocab

    lists = {name: value for name, value in vars(vocab).items()
             if name.isupper() and isinstance(value, (tuple, dict)) and len(value) > 1}
    owners = {REPO / "tsn_keras" / "vocab.py", REPO / "tfrecords_tools" / "schema.py"}
    redefined = []
    for path in _modules().values():
        if path in owners:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Tuple, ast.List, ast.Dict)):
                try:
                    value = ast.literal_eval(node.value)
                except ValueError:
                    continue
                if isinstance(value, list):
                    value = tuple(value)
                for name, listed in lists.items():
                    if value == listed:
                        redefined.append(f"{path.relative_to(REPO)}:{node.lineno} repeats vocab.{name}")
    assert redefined == []


LOAD_SCRIPT = """
import sys
import tsn_keras
assert "keras" not in sys.modules, "import tsn_keras must not import Keras"
import keras
model = keras.models.load_model(sys.argv[1])
print(type(model).__name__, model.modality, model.new_length, model.input_size, model.normalization,
      ",".join(model.class_names))
"""


@pytest.mark.slow
def test_a_keras_file_loads_after_a_plain_import_and_tells_its_protocol(tmp_path):
    from tsn_keras.models import build_tsn

    path = tmp_path / "flow.keras"
    build_tsn(3, "flow", new_length=2, backbone="tiny", input_size=32, class_names=["a", "b", "c"]).save(path)
    result = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(path)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["TSN", "flow", "2", "32", "keras_tf", "a,b,c"]
