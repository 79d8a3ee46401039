"""The agent registry: an agent is its module plus one entry here. The command line
(`purerl NAME`), `load_policy`, `enjoy`, `check_envs` and the benchmark find agents through it.

An agent module provides a config dataclass and `recipe(config, context) -> purerl.Recipe`,
which makes the agent and sizes its data path and schedule for a run. purerl registers its
own agents below; a package adds its agents without touching purerl, either by calling
`purerl.register_agent` or, so that they are on the command line as soon as the package is
installed, by an entry point in its own `pyproject.toml`:

```toml
[project.entry-points."purerl.agents"]
myq = "my_pkg.myq:MyQConfig"    # the module also defines recipe(config, context)
```
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from purerl.core import DEVICE_AXIS, Context, Recipe

ENTRY_POINT_GROUP = "purerl.agents"

RecipeFn = Callable[[Any, Context], Recipe]


def load_object(source: str) -> Any:
    """The object `"package.module:name"` names (a dotted name after the colon is followed
    attribute by attribute), or a clear error."""
    module_name, _, attr = source.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{source!r} is not of the form 'package.module:name'.")
    try:
        obj: Any = _import(module_name)
    except ImportError as e:
        raise ValueError(
            f"Cannot import {module_name!r} (from {source!r}): {e}. Install the package that "
            "provides it, or run from the folder that holds it."
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{module_name} has no {attr!r} (from {source!r}).") from None
    return obj


def _import(module_name: str) -> Any:
    """The module, looked for in the working directory too (as `python -m` would), where
    the command was started without it on `sys.path` (a console script)."""
    try:
        return importlib.import_module(module_name)
    except ImportError:
        cwd = str(Path.cwd())
        if cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        return importlib.import_module(module_name)


def source_of(obj: Any) -> str | None:
    """`"module:qualname"` of an importable module-level object, or None (a lambda, a
    closure, a `functools.partial`). An object of a script run as `__main__` is named by the
    module the script is importable as from `sys.path` (`python examples/reinforce.py` ->
    `reinforce:make_reinforce`)."""
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not name or "<" in name:
        return None
    if module == "__main__":
        return _script_source(name)
    try:
        return f"{module}:{name}" if load_object(f"{module}:{name}") is obj else None
    except ValueError:
        return None


def _script_source(name: str) -> str | None:
    """`"module:name"` of `name` in the running script, as importable from `sys.path`. The
    script is not imported here, and is named only where it guards its top-level work with
    `if __name__ == "__main__"`: importing it later (to load the run) must not run it."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    file = getattr(main, "__file__", None)
    if not file or not Path(file).is_file():
        return None
    text = Path(file).read_text(errors="replace")
    if "__name__ == '__main__'" not in text and '__name__ == "__main__"' not in text:
        return None
    if spec is not None and spec.name:
        return f"{spec.name}:{name}"
    path = Path(file).resolve().with_suffix("")
    for entry in sys.path[:1] + [str(Path.cwd())]:  # The script's folder, then here.
        try:
            parts = path.relative_to(Path(entry or ".").resolve()).parts
        except ValueError:
            continue
        if parts and all(p.isidentifier() for p in parts):
            return f"{'.'.join(parts)}:{name}"
    return None


class Entry(NamedTuple):
    """A registered agent.

    Attributes:
      name: its name on the command line (`purerl NAME`).
      config: its config class, or `"module:Class"` (imported when first used).
      recipe_fn: `(config, context) -> Recipe`, or None for the function `recipe` in the
        config class's module.
    """

    name: str
    config: type | str
    recipe_fn: RecipeFn | None = None

    @property
    def source(self) -> str:
        """`"module:ConfigClass"`, from which a run of this agent is rebuilt."""
        if isinstance(self.config, str):
            return self.config
        return f"{self.config.__module__}:{self.config.__qualname__}"

    def config_class(self) -> type:
        config = load_object(self.config) if isinstance(self.config, str) else self.config
        if not isinstance(config, type):
            raise ValueError(f"Agent {self.name!r}: {self.source} is not a config class.")
        return config

    def recipe_function(self) -> RecipeFn:
        if self.recipe_fn is not None:
            return self.recipe_fn
        module = sys.modules[self.config_class().__module__]
        fn = getattr(module, "recipe", None)
        if not callable(fn):
            raise ValueError(
                f"Agent {self.name!r}: {module.__name__} defines no recipe(config, context) -> "
                "purerl.Recipe; define one there, or register the agent with recipe=..."
            )
        return fn

    def recipe(self, config: Any, context: Context) -> Recipe:
        """The agent's recipe, its agent wrapped by the options every agent has (observation
        normalisation)."""
        from purerl.agents.options import NetworkOptions

        recipe = self.recipe_function()(config, context)
        if not isinstance(recipe, Recipe):
            raise ValueError(
                f"Agent {self.name!r}: its recipe returned {type(recipe).__name__}, not a "
                "purerl.Recipe(agent, data, schedule, num_envs)."
            )
        if isinstance(config, NetworkOptions) and config.normalize_observations:
            from purerl.agents.normalize import normalize_observations

            recipe = recipe._replace(agent=normalize_observations(recipe.agent, DEVICE_AXIS))
        return recipe


_REGISTRY: dict[str, Entry] = {}
_BUILT_IN: list[str] = []
_plugins_loaded = False


def register_agent(name: str, config: type | str, recipe: RecipeFn | None = None) -> Entry:
    """Adds an agent to the registry, so that `purerl NAME` trains it with every option,
    `--sweep`, `--resume`, evaluation, `load_policy`, `enjoy` and the benchmark.

    Args:
      name: its name on the command line.
      config: its config class (a frozen dataclass of its options) or `"module:Class"`.
      recipe: `(config, context) -> purerl.Recipe`; by default the function `recipe` in the
        config class's module.
    """
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"Agent name {name!r}: use letters, digits, '-' and '_'.")
    if name in _BUILT_IN:
        raise ValueError(f"{name!r} is one of purerl's own agents; choose another name.")
    entry = Entry(name, config, recipe)
    _REGISTRY[name] = entry
    return entry


def _load_plugins() -> None:
    """Registers the agents that installed packages declare in the `purerl.agents` entry
    point group (once; an agent registered in this process keeps its entry)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if point.name in _REGISTRY:
            continue
        if point.name in _BUILT_IN:
            print(
                f"warning: the package of entry point {point.value!r} registers an agent "
                f"named {point.name!r}, one of purerl's own; it is not used.",
                file=sys.stderr,
            )
            continue
        _REGISTRY[point.name] = Entry(point.name, point.value)


def get(name: str) -> Entry:
    """The registered agent `name` (purerl's own, a plugin's, or one registered in this
    process), or a clear error listing them."""
    if name not in _REGISTRY:
        _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown agent {name!r}; registered agents: {names()}.") from None


def names() -> list[str]:
    """Every registered agent's name, purerl's own and those of installed plugins."""
    _load_plugins()
    return sorted(_REGISTRY)


def built_in() -> list[str]:
    """purerl's own agents, in the order they were registered."""
    return list(_BUILT_IN)


for _name, _config in (
    ("ppo", "purerl.agents.ppo:PPOConfig"),
    ("a2c", "purerl.agents.ppo:A2CConfig"),
    ("impala", "purerl.agents.impala:IMPALAConfig"),
    ("dqn", "purerl.agents.dqn:DQNConfig"),
    ("c51", "purerl.agents.dqn:C51Config"),
    ("qrdqn", "purerl.agents.dqn:QRDQNConfig"),
    ("rainbow", "purerl.agents.dqn:RainbowConfig"),
    ("r2d2", "purerl.agents.r2d2:R2D2Config"),
    ("sac", "purerl.agents.sac:SACConfig"),
    ("td3", "purerl.agents.td3:TD3Config"),
    ("ddpg", "purerl.agents.td3:DDPGConfig"),
):
    _REGISTRY[_name] = Entry(_name, _config)
    _BUILT_IN.append(_name)
