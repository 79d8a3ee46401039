"""Brax environments (`--env brax:NAME`: `inverted_pendulum`, `hopper`, `halfcheetah`, `ant`,
...) behind purerl's protocol, on the device loop. Brax is an optional extra:
`pip install -e ".[brax]"`.

Brax's own `step(state, action)` neither resets nor limits time; here an episode ends when
brax says it is done (`terminated`) or after `max_steps` steps (`truncated`, 1000 by
default as in Brax's training wrappers), the env then resets itself and the ended episode's
last observation goes to `info["final_observation"]`. Actions are Brax's `[-1, 1]^A`.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from purerl.envs.base import StepResult

EXTRA_HINT = 'Brax is an optional extra: pip install -e ".[brax]" (or pip install brax).'


@struct.dataclass
class BraxParams:
    max_steps: int = 1000  # Steps before an episode is truncated.


@struct.dataclass
class BraxState:
    state: Any  # brax.envs.State
    time: jax.Array  # [] int32, steps into the running episode.


class BraxEnv:
    """A Brax `PipelineEnv` as a single, auto-resetting purerl environment."""

    def __init__(self, env: Any, name: str):
        self.env, self.name = env, name

    @property
    def default_params(self) -> BraxParams:
        return BraxParams()

    def reset(self, key: jax.Array, params: BraxParams) -> tuple[jax.Array, BraxState]:
        state = self.env.reset(key)
        return state.obs, BraxState(state, jnp.zeros((), jnp.int32))

    def step(
        self, key: jax.Array, state: BraxState, action: jax.Array, params: BraxParams
    ) -> StepResult:
        after = self.env.step(state.state, action)
        time = state.time + 1
        terminated = jnp.asarray(after.done) > 0.5
        truncated = jnp.logical_and(time >= params.max_steps, jnp.logical_not(terminated))
        done = jnp.logical_or(terminated, truncated)
        fresh = self.env.reset(key)
        pick = lambda new, old: jnp.where(done, new, old)  # noqa: E731
        # Only what the next step reads: the physics state and the observation.
        next_state = after.replace(
            pipeline_state=jax.tree.map(pick, fresh.pipeline_state, after.pipeline_state),
            obs=pick(fresh.obs, after.obs),
        )
        info = {"final_observation": after.obs}
        return (
            next_state.obs,
            BraxState(next_state, jnp.where(done, 0, time)),
            jnp.asarray(after.reward, jnp.float32),
            terminated,
            truncated,
            info,
        )

    def observation_space(self, params: BraxParams) -> gymnasium.spaces.Box:
        return gymnasium.spaces.Box(-np.inf, np.inf, (self.env.observation_size,), np.float32)

    def action_space(self, params: BraxParams) -> gymnasium.spaces.Box:
        return gymnasium.spaces.Box(-1.0, 1.0, (self.env.action_size,), np.float32)

    def __repr__(self) -> str:
        return f"BraxEnv({self.name})"


def make_brax(name: str, **kwargs: Any) -> tuple[BraxEnv, BraxParams]:
    """Brax's environment `name` (keyword arguments go to `brax.envs.get_environment`)."""
    try:
        from brax import envs
    except ImportError as e:
        raise ValueError(
            f"--env brax:{name} needs Brax, which is not installed ({e}). {EXTRA_HINT}"
        ) from None
    known = sorted(envs._envs) if hasattr(envs, "_envs") else []
    if known and name not in known:
        raise ValueError(f"Unknown Brax environment {name!r}; Brax has: {', '.join(known)}.")
    env = BraxEnv(envs.get_environment(name, **kwargs), name)
    return env, env.default_params
