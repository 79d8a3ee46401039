"""Layers import down: `core` (and `running_stats`) <- `networks`, `replay`, `envs` <- `agents`
<- `experiments`. A module imports from its own folder or from a lower layer, at the top of the
file or inside a function alike; imports for type checking only are exempt."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAYERS = {
    "core": 0,
    "running_stats": 0,
    "networks": 1,
    "replay": 1,
    "envs": 1,
    "agents": 2,
    "experiments": 3,
}


def _runtime_nodes(tree: ast.AST):
    """Every node outside `if TYPE_CHECKING:` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
            else:
                stack.append(child)


def purerl_imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """`(line, top-level part)` of each purerl module `path` imports at run time."""
    found = []
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            parts = node.module.split(".")
            if parts[0] != "purerl":
                continue
            if len(parts) > 1:
                found.append((node.lineno, parts[1]))
            else:  # `from purerl import envs, train`
                found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "purerl" and len(parts) > 1:
                    found.append((node.lineno, parts[1]))
    return found


def allowed(part: str, imported: str) -> bool:
    if imported == part:
        return True
    if imported not in LAYERS:  # The package root (`purerl.train`), which exports the engine.
        return part == "experiments"
    return LAYERS[imported] < LAYERS[part]


def modules(part: str) -> list[pathlib.Path]:
    path = ROOT / part
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


@pytest.mark.parametrize("part", sorted(LAYERS))
def test_each_layer_imports_only_its_own_folder_and_lower_layers(part):
    wrong = []
    for path in modules(part):
        for line, imported in purerl_imports(path):
            if not allowed(part, imported):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports purerl.{imported}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_function_local_imports_and_skips_type_checking_ones(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from purerl.agents import ppo\n"
        "def f():\n    from purerl.agents.normalize import stats_init\n"
        "from purerl import envs\n"
    )
    assert sorted(purerl_imports(source)) == [(5, "agents"), (6, "envs")]
