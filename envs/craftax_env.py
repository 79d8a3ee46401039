"""Craftax environments (`--env craftax:ID`: `Craftax-Classic-Symbolic-v1`,
`Craftax-Symbolic-v1` and their `-Pixels-v1` twins) behind purerl's protocol, on the device
loop. Craftax is an optional extra: `pip install -e ".[craftax]"`.

Craftax's `done` joins death (or lava) and its time limit; here an episode that reaches
`max_timesteps` is `truncated` (bootstrapped) and any other end `terminated`. The symbolic
observation is Craftax's float32 vector, the pixel one its `[H, W, 3]` float32 image in
[0, 1]; both reach the agent as they are. Its params are Craftax's own `EnvParams`:
`--env-params max_timesteps=1000` (or `day_length`, `zombie_health`, ...) sets them. (The
first pixel environment made renders Craftax's textures once, about a minute, then cached.)
"""

from __future__ import annotations

from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from purerl.envs.base import EnvParams
from purerl.envs.suites import DiscreteSuiteEnv, box_like, import_suite, unknown_id

PREFIX = "craftax"
IDS = (
    "Craftax-Classic-Symbolic-v1",
    "Craftax-Classic-Pixels-v1",
    "Craftax-Symbolic-v1",
    "Craftax-Pixels-v1",
)


class CraftaxEnv(DiscreteSuiteEnv):
    """A Craftax environment as a single, auto-resetting purerl environment."""

    prefix = PREFIX

    def __init__(self, name: str, env: Any):
        self.name, self.env = name, env

    @property
    def default_params(self) -> Any:
        return self.env.default_params

    def num_actions(self, params: EnvParams) -> int:
        return int(self.env.num_actions)

    def _reset(self, key: jax.Array, params: Any) -> tuple[Any, jax.Array]:
        obs, state = self.env.reset(key, params)
        return state, obs

    def _step(
        self, key: jax.Array, state: Any, action: jax.Array, params: Any
    ) -> tuple[Any, jax.Array, jax.Array, jax.Array, jax.Array]:
        obs, state, reward, done, _ = self.env.step_env(key, state, action, params)
        truncated = state.timestep >= params.max_timesteps
        terminated = jnp.logical_and(done, jnp.logical_not(truncated))
        return state, obs, reward, terminated, jnp.logical_and(done, truncated)

    def observation_space(self, params: EnvParams) -> gymnasium.spaces.Box:
        example = self.observation_example(params)
        if len(example.shape) == 3:  # Pixels in [0, 1].
            return box_like(example, 0.0, 1.0)
        return gymnasium.spaces.Box(-np.inf, np.inf, example.shape, np.float32)


def make_craftax(name: str, **kwargs: Any) -> tuple[CraftaxEnv, Any]:
    """Craftax's environment `name`; `kwargs` set fields of its `EnvParams`."""
    craftax_env = import_suite("craftax.craftax_env", PREFIX, name, "craftax")
    if name not in IDS:
        raise unknown_id("Craftax", PREFIX, name, IDS)
    env = CraftaxEnv(name, craftax_env.make_craftax_env_from_name(name, auto_reset=False))
    params = env.default_params.replace(**kwargs) if kwargs else env.default_params
    return env, params
