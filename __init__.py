"""purerl: reinforcement-learning agents as pure JAX functions.

    result = purerl.train(purerl.Recipe(agent, data, schedule, num_envs=8), RunConfig(...))
    policy = purerl.load_policy(result.run_dir)

`purerl.core` holds the contract (`Agent`, `Recipe`, `Context`), `purerl.agents` the agents,
`purerl.replay` the data paths, `purerl.envs` the environments and
`purerl.experiments.engine` the loops and run features.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from purerl.agents.registry import register_agent
    from purerl.core import Agent, Context, Recipe
    from purerl.experiments.engine.config import RunConfig
    from purerl.experiments.engine.policy import Policy
    from purerl.experiments.engine.trainer import TrainResult

__version__ = "0.1.0"
__all__ = [
    "Agent",
    "Context",
    "Recipe",
    "RunConfig",
    "load_policy",
    "register_agent",
    "train",
]


def load_policy(run_dir: str | Path, seed_index: int = 0, agent: Any = None) -> Policy:
    """A trained run's deterministic policy, jitted: `policy(obs[B, ...], key) -> action[B]`
    (recurrent policies: `policy.step(carry, obs, key)`). For a run of an agent of your own
    that recorded no importable factory, pass the `agent` (Agent, Recipe or factory) it was
    trained with.

    See `purerl.experiments.engine.policy.load_policy`.
    """
    from purerl.experiments.engine.policy import load_policy as _load_policy

    return _load_policy(run_dir, seed_index, agent)


def train(
    agent: Any,
    data: Any = None,
    schedule: Any = None,
    run: RunConfig | None = None,
    *,
    num_envs: int | None = None,
    discount: float | None = None,
    name: str | None = None,
    resume: str | Path | None = None,
) -> TrainResult:
    """Trains your own agent on purerl's loops, with every run feature the built-in agents
    have; returns the summary and the trained agent states (`TrainResult`).

    `agent` is an `Agent` (with `data` and `schedule`), a `Recipe`, or a factory of either
    (a function or `"module:function"`, recorded so the run can be rebuilt). See
    `purerl.experiments.engine.trainer.train_agent`.
    """
    from purerl.experiments.engine.trainer import train_agent

    return train_agent(
        agent,
        data,
        schedule,
        run,
        num_envs=num_envs,
        discount=discount,
        name=name,
        resume=resume,
    )


# Imported when first asked for, so that `import purerl` does not import JAX: the `purerl`
# command's tools that need none (`--help`, `plot`) start at once, and the command sets up the
# process (`purerl.experiments.command`) before JAX's import.
_LAZY = {
    "Agent": "purerl.core",
    "Context": "purerl.core",
    "Recipe": "purerl.core",
    "register_agent": "purerl.agents.registry",
    "RunConfig": "purerl.experiments.engine.config",
}
_PACKAGES = ("core", "agents", "envs", "networks", "replay", "experiments", "running_stats")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _PACKAGES:  # `import purerl; purerl.core.Agent`, as when purerl imported it.
        return importlib.import_module(f"purerl.{name}")
    raise AttributeError(f"module 'purerl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
