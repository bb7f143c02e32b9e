"""The import graph of src/robodream, read statically: no circles, and the layers import one way
(robots -> datasets -> world_models, policies -> pipeline; design.md §1). Inside pipeline/, the stage folders
import one way too (docs/architecture.md): the spine's base (config, cli_args, stages) imports no stage folder;
a stage folder imports the base and the folders before it in PIPELINE_FOLDERS, never one after it nor the
spine's top (cli, run), which may import everything.

Every import counts, at module level and inside functions: a lazy import is still a dependency, and a
circle hidden inside a function is still a circle (it only fails later, at run time).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "robodream"

# What each layer must not import (robodream.errors, robodream.trainer and other top-level modules are free).
FORBIDDEN = {
    "robots": ("datasets", "world_models", "policies", "pipeline"),
    "datasets": ("world_models", "policies", "pipeline"),
    "world_models": ("policies", "pipeline"),
    "policies": ("world_models", "pipeline"),
}


# The stage folders of pipeline/ in data-flow order: each may import only the ones before it.
PIPELINE_FOLDERS = ("runtime", "data", "world_model", "policy", "synthetic", "robot", "report", "experiments")
PIPELINE_BASE = ("config", "cli_args", "stages")
PIPELINE_TOP = ("cli", "run")


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, package: str, modules: set[str]) -> list[str]:
    """The robodream modules an import statement names (`from a import b` names a.b when that is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in modules]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parts, base] if base else parts)
    found = []
    for alias in node.names:
        name = f"{base}.{alias.name}"
        target = name if name in modules else base
        if target in modules:
            found.append(target)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """{module: the robodream modules it imports anywhere in its file}."""
    files = {_module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[name] = {t for node in ast.walk(tree) for t in _imported(node, package, set(files)) if t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None (depth-first search, iterative: no recursion limit)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(graph.get(child, ()))))
    return None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    def layer(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else None

    return [f"{source} imports {target}" for source, targets in sorted(graph.items()) for target in sorted(targets)
            if layer(target) in FORBIDDEN.get(layer(source), ())]


def pipeline_violations(graph: dict[str, set[str]]) -> list[str]:
    def place(module: str) -> str | None:
        parts = module.split(".")
        return parts[2] if len(parts) > 2 and parts[1] == "pipeline" else None

    def allowed(source: str, target: str) -> bool:
        if source in PIPELINE_TOP or target == source or target in PIPELINE_BASE:
            return True
        if source in PIPELINE_BASE or target in PIPELINE_TOP:
            return False
        if source not in PIPELINE_FOLDERS or target not in PIPELINE_FOLDERS:
            return False  # a new module at pipeline's top: say where it belongs before using it
        return PIPELINE_FOLDERS.index(target) < PIPELINE_FOLDERS.index(source)

    return [f"{source} imports {target}" for source, targets in sorted(graph.items()) for target in sorted(targets)
            if place(source) and place(target) and not allowed(place(source), place(target))]


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_layers_import_one_way():
    violations = layer_violations(import_graph())
    assert not violations, "imports against the layer order (robots -> datasets -> world_models, policies -> " \
                           "pipeline): " + "; ".join(violations)


def test_the_checks_see_a_circle_and_a_wrong_way_import(tmp_path):
    root = tmp_path / "robodream"
    (root / "robots").mkdir(parents=True)
    (root / "pipeline").mkdir()
    for package in (root, root / "robots", root / "pipeline"):
        (package / "__init__.py").write_text("")
    (root / "pipeline" / "a.py").write_text("from robodream.pipeline import b\n")
    (root / "pipeline" / "b.py").write_text("def f():\n    from .a import x\n")  # inside a function: counts
    (root / "robots" / "arm.py").write_text("import robodream.pipeline.a\n")
    graph = import_graph(root)
    assert find_cycle(graph) in (["robodream.pipeline.a", "robodream.pipeline.b", "robodream.pipeline.a"],
                                 ["robodream.pipeline.b", "robodream.pipeline.a", "robodream.pipeline.b"])
    assert layer_violations(graph) == ["robodream.robots.arm imports robodream.pipeline.a"]



def test_pipeline_stage_folders_import_one_way():
    violations = pipeline_violations(import_graph())
    assert not violations, f"imports against the stage-folder order {PIPELINE_FOLDERS}: " + "; ".join(violations)


def test_the_folder_check_sees_an_upstream_folder_importing_a_downstream_one(tmp_path):
    root = tmp_path / "robodream"
    for folder in ("", "pipeline", "pipeline/data", "pipeline/policy"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "__init__.py").write_text("")
    (root / "pipeline" / "stages.py").write_text("")
    (root / "pipeline" / "policy" / "train.py").write_text("from robodream.pipeline.data import collect\n"
                                                           "from robodream.pipeline import stages\n")
    lazy = "def f():\n    from robodream.pipeline.policy import train\n"  # inside a function: counts
    (root / "pipeline" / "data" / "collect.py").write_text(lazy)
    assert pipeline_violations(import_graph(root)) == [
        "robodream.pipeline.data.collect imports robodream.pipeline.policy.train"]
