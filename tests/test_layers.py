"""The shape of the code: no import cycle between modules, layers that point one way, no private name imported
from another package, and no file or function past its size. Imports inside functions count too (a cycle that works
only because one side imports late is still a cycle in the design). ARCHITECTURE.md explains the layers."""

import ast
from pathlib import Path

import pytest

import clipblip

ROOT = Path(clipblip.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = list(f.relative_to(ROOT.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """The clipblip modules `name` imports; `from pkg import mod` counts as importing mod, not pkg."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            found.update(subs if len(subs) == len(node.names) else [target, *subs])
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m):
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = 2
        path.pop()
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_module_imports_another_in_a_circle():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert len(graph) > 80 and sum(map(len, graph.values())) > 150  # the walk sees the package
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_walk_finds_a_cycle_when_there_is_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


# From the bottom. A component (a package, or a module at the top of clipblip) may import components of lower tiers
# only; two components of one tier never import each other (train, eval and index above all).
TIERS = [
    {"errors", "version"},
    {"runtime", "files", "jobs", "metrics", "stats", "distributed", "extras"},
    {"image", "text", "nn", "generate"},
    {"config"},
    {"towers"},
    {"models"},
    {"convert", "catalog"},
    {"checkpoint", "hub"},
    {"export", "export_onnx", "loading"},
    {"tasks"},
    {"data"},
    {"train", "eval", "index"},
    {"experiments"},
    {"serve"},
    {"cli"},
    {"clipblip"},  # the package root, the public face: load, save and the tasks, re-exported
    {"demo"},
]
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60


def _component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "clipblip"


def _tier(component: str) -> int:
    found = [i for i, tier in enumerate(TIERS) if component in tier]
    assert found, f"{component} is in no tier of TIERS: place it (and say where in ARCHITECTURE.md)"
    return found[0]


def _upward(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, targets in sorted(graph.items()):
        for t in sorted(targets):
            a, b = _component(m), _component(t)
            if a != b and _tier(b) >= _tier(a):
                bad.append(f"{m} -> {t}")
    return bad


def test_layers_point_one_way():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert _upward(graph) == []


def test_the_layer_check_sees_a_sideways_and_an_upward_import():
    assert _upward({"clipblip.train.loop": {"clipblip.eval.metrics"}, "clipblip.nn.mlp": {"clipblip.models.clip"},
                    "clipblip.models.clip": {"clipblip.nn.mlp", "clipblip.models.carries"}}) == [
        "clipblip.nn.mlp -> clipblip.models.clip", "clipblip.train.loop -> clipblip.eval.metrics"]


def _private_imports(name: str, path: Path) -> list[str]:
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if target.startswith("clipblip") and _component(target) != _component(name):
                bad += [f"{name}: {a.name} from {target}" for a in node.names
                        if a.name.startswith("_") and not a.name.endswith("__")]
    return bad


def test_no_module_imports_a_private_name_from_another_package():
    assert [b for name, path in sorted(_modules().items()) for b in _private_imports(name, path)] == []


def test_the_private_check_sees_one(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from ..data.shards import _image_format, image_format\nfrom .readers import _local\n")
    assert _private_imports("clipblip.tasks.m", f) == ["clipblip.tasks.m: _image_format from clipblip.data.shards"]


def _too_long(path: Path) -> list[str]:
    text = path.read_text()
    bad = [f"{path.name}: {len(text.splitlines())} lines"] if len(text.splitlines()) > MAX_FILE_LINES else []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                bad.append(f"{path.name}: {node.name} is {length} lines")
    return bad


def test_no_file_or_function_past_its_size():
    assert [b for path in sorted(ROOT.rglob("*.py")) for b in _too_long(path)] == []


@pytest.mark.parametrize("source, found", [
    ("def f():\n" + "    x = 1\n" * 60, ["m.py: f is 61 lines"]),
    ("def f():\n" + "    x = 1\n" * 59, []),
    ("x = 1\n" * 401, ["m.py: 401 lines"]),
])
def test_the_size_check_counts_lines(tmp_path, source, found):
    (tmp_path / "m.py").write_text(source)
    assert _too_long(tmp_path / "m.py") == found
