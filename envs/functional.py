"""Adapter for Gymnasium's functional JAX environments
(`gymnasium.experimental.functional.FuncEnv`)."""

from __future__ import annotations

from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
from flax import struct
from purerl.envs.base import StepResult


@struct.dataclass
class FuncEnvState:
    env_state: Any  # The FuncEnv's own state pytree.
    time: jax.Array  # [] int32, steps taken in the current episode.


@struct.dataclass
class FuncEnvParams:
    env_params: Any  # The FuncEnv's params (e.g. `CartPoleParams`).
    max_episode_steps: int = struct.field(pytree_node=False, default=0)  # 0: no time limit.


class FunctionalEnv:
    """A `FuncEnv` with a time limit and auto-reset, following purerl's protocol.

    `FuncEnv`s neither count steps nor reset themselves; this adapter does both, as
    Gymnasium's `TimeLimit` and same-step auto-reset would, keeping the last
    observation of an ended episode in `info["final_observation"]`.
    """

    def __init__(
        self, func_env: Any, max_episode_steps: int | None = None, name: str | None = None
    ):
        self.func_env = func_env
        self.max_episode_steps = int(max_episode_steps or 0)
        self.name = name or type(func_env).__name__

    @property
    def default_params(self) -> FuncEnvParams:
        return FuncEnvParams(self.func_env.default_params, self.max_episode_steps)

    def _reset(self, key: jax.Array, params: FuncEnvParams) -> tuple[Any, FuncEnvState]:
        k_init, k_obs = jax.random.split(key)
        env_state = self.func_env.initial(k_init, params.env_params)
        obs = self.func_env.observation(env_state, k_obs, params.env_params)
        return obs, FuncEnvState(env_state, jnp.zeros((), jnp.int32))

    def reset(self, key: jax.Array, params: FuncEnvParams) -> tuple[Any, FuncEnvState]:
        return self._reset(key, params)

    def step(
        self, key: jax.Array, state: FuncEnvState, action: jax.Array, params: FuncEnvParams
    ) -> StepResult:
        k_step, k_obs, k_reset = jax.random.split(key, 3)
        p = params.env_params
        next_env_state = self.func_env.transition(state.env_state, action, k_step, p)
        reward = self.func_env.reward(state.env_state, action, next_env_state, k_step, p)
        terminated = jnp.asarray(self.func_env.terminal(next_env_state, k_obs, p), bool)
        obs_st = self.func_env.observation(next_env_state, k_obs, p)
        time = state.time + 1
        if params.max_episode_steps > 0:
            truncated = time >= params.max_episode_steps
        else:
            truncated = jnp.zeros((), bool)
        done = terminated | truncated

        obs_re, state_re = self._reset(k_reset, params)
        state_st = FuncEnvState(next_env_state, time)
        select = lambda a, b: jax.tree.map(lambda x, y: jnp.where(done, x, y), a, b)  # noqa: E731
        info = {"final_observation": obs_st}
        return (
            select(obs_re, obs_st),
            select(state_re, state_st),
            jnp.asarray(reward, jnp.float32),
            terminated,
            truncated,
            info,
        )

    def observation_space(self, params: FuncEnvParams) -> gymnasium.spaces.Space:
        return self.func_env.observation_space

    def action_space(self, params: FuncEnvParams) -> gymnasium.spaces.Space:
        return self.func_env.action_space

    def __repr__(self) -> str:
        return f"FunctionalEnv({self.name}, max_episode_steps={self.max_episode_steps})"
