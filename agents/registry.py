"""The agent registry: an agent is its module plus one entry here. The experiment scripts,
`load_policy`, `enjoy` and the benchmark find agents through it.

An agent module provides a config dataclass (with an `env_steps_per_update` property: env
steps per learner update, over all devices), `make(config, ...) -> Agent` and
`recipe(config, context) -> Recipe`, which sizes its data path and schedule for a run.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, NamedTuple

from purerl.core import DEVICE_AXIS, Agent
from purerl.replay.base import DataPath, Schedule


class Recipe(NamedTuple):
    """How an agent trains, as either loop runs it.

    Attributes:
      agent: the agent, made with `axis_name=purerl.core.DEVICE_AXIS`.
      data: its data path, sized per device (each device holds its own shard).
      schedule: rollout length, gradient steps per update, warm-up steps.
      num_envs: environments per device (device loop) or in all (host loop).
    """

    agent: Agent
    data: DataPath
    schedule: Schedule
    num_envs: int


class Context(NamedTuple):
    """What a recipe is sized for.

    Attributes:
      num_devices: devices the learner is data-parallel over.
      num_updates: learner updates in the whole run (the horizon of decaying schedules).
      host: True on the host loop (all envs on the host), False on the device loop (each
        device steps its own share of the envs).
    """

    num_devices: int = 1
    num_updates: int = 1
    host: bool = False


class Entry(NamedTuple):
    """A registered agent.

    Attributes:
      name: its name on the command line (`python -m purerl.experiments.NAME`).
      module: the import path of its module.
      config: the name of its config class in that module.
      off_policy: it learns from replay, so the host loop may let acting run ahead of
        learning (default `--max-staleness 1`) and batch a few updates per message.
    """

    name: str
    module: str
    config: str
    off_policy: bool = False

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    def config_class(self) -> type:
        return getattr(self.load(), self.config)

    def recipe(self, config: Any, context: Context) -> Recipe:
        """The module's recipe, its agent wrapped by the options every agent has (observation
        normalisation)."""
        recipe = self.load().recipe(config, context)
        if getattr(config, "normalize_observations", False):
            from purerl.agents.normalize import normalize_observations

            recipe = recipe._replace(agent=normalize_observations(recipe.agent, DEVICE_AXIS))
        return recipe


_REGISTRY: dict[str, Entry] = {}


def register(name: str, module: str, config: str, off_policy: bool = False) -> Entry:
    """Adds an agent (its module is imported when first used)."""
    entry = Entry(name, module, config, off_policy)
    _REGISTRY[name] = entry
    return entry


def get(name: str) -> Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown agent {name!r}; registered agents: {names()}.") from None


def names() -> list[str]:
    return sorted(_REGISTRY)


register("ppo", "purerl.agents.ppo", "PPOConfig")
register("a2c", "purerl.agents.ppo", "A2CConfig")
register("impala", "purerl.agents.impala", "IMPALAConfig")
register("dqn", "purerl.agents.dqn", "DQNConfig", off_policy=True)
register("sac", "purerl.agents.sac", "SACConfig", off_policy=True)
register("td3", "purerl.agents.td3", "TD3Config", off_policy=True)
register("ddpg", "purerl.agents.td3", "DDPGConfig", off_policy=True)
register("c51", "purerl.agents.dqn", "C51Config", off_policy=True)
register("qrdqn", "purerl.agents.dqn", "QRDQNConfig", off_policy=True)
register("rainbow", "purerl.agents.dqn", "RainbowConfig", off_policy=True)
register("r2d2", "purerl.agents.r2d2", "R2D2Config", off_policy=True)
