"""XLand-MiniGrid environments (`--env xminigrid:ID`: `MiniGrid-Empty-6x6`,
`XLand-MiniGrid-R1-9x9`, ...) behind purerl's protocol, on the device loop. XLand-MiniGrid
is an optional extra: `pip install -e ".[xminigrid]"`.

Its `step` does not reset; an episode ends at a `LAST` time step, as `terminated` where its
discount is 0 (the goal met) and as `truncated` at its `max_steps` limit. The observation is
the agent's view, an image `[V, V, 2]` of tile and colour ids, which the agent sees as float32
numbers (not as uint8 pixels it would scale to [0, 1]).
Its params are XLand-MiniGrid's own `EnvParams`: `--env-params max_steps=50` (or
`view_size=5`) sets them; an XLand task comes from the `ruleset` field, which code sets from a
benchmark (`params.replace(ruleset=xminigrid.load_benchmark(NAME).get_ruleset(i))`).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
from purerl.envs.base import EnvParams
from purerl.envs.suites import DiscreteSuiteEnv, box_like, import_suite, unknown_id

PREFIX = "xminigrid"
_LAST = 2  # XLand-MiniGrid's (dm_env's) last step type.


class XMiniGridEnv(DiscreteSuiteEnv):
    """An XLand-MiniGrid environment as a single, auto-resetting purerl environment."""

    prefix = PREFIX

    def __init__(self, name: str, env: Any, params: Any):
        self.name, self.env, self._default = name, env, params

    @property
    def default_params(self) -> Any:
        return self._default

    def num_actions(self, params: EnvParams) -> int:
        return int(self.env.num_actions(params))

    def _reset(self, key: jax.Array, params: Any) -> tuple[Any, jax.Array]:
        timestep = self.env.reset(params, key)
        return timestep, timestep.observation.astype(jnp.float32)

    def _step(
        self, key: jax.Array, state: Any, action: jax.Array, params: Any
    ) -> tuple[Any, jax.Array, jax.Array, jax.Array, jax.Array]:
        timestep = self.env.step(params, state, action)
        last = timestep.step_type == _LAST
        terminated = last & (timestep.discount == 0)
        obs = timestep.observation.astype(jnp.float32)
        return timestep, obs, timestep.reward, terminated, last & ~terminated

    def observation_space(self, params: EnvParams) -> gymnasium.spaces.Box:
        return box_like(self.observation_example(params), 0, 255)


def make_xminigrid(name: str, **kwargs: Any) -> tuple[XMiniGridEnv, Any]:
    """XLand-MiniGrid's environment `name` (keyword arguments go to `xminigrid.make`)."""
    xminigrid = import_suite("xminigrid", PREFIX, name, "xminigrid")
    known = list(xminigrid.registered_environments())
    if name not in known:
        raise unknown_id("XLand-MiniGrid", PREFIX, name, known)
    env, params = xminigrid.make(name, **kwargs)
    return XMiniGridEnv(name, env, params), params
