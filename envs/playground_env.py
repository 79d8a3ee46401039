"""MuJoCo Playground environments (`--env playground:ID`: `CartpoleBalance`,
`CheetahRun`, `Go1JoystickFlatTerrain`, ...) behind purerl's protocol, on the device loop,
simulated by MJX's JAX implementation. MuJoCo Playground is an optional extra:
`pip install -e ".[playground]"`.

Playground's `step(state, action)` neither resets nor limits time; here an episode ends where
Playground says it is done (`terminated`) or after `episode_length` steps of the environment
(`truncated`), and the env resets itself in that step. Actions are Playground's `[-1, 1]^A`.
A dict observation gives the agent its `"state"` entry (Playground's policy input; the
`"privileged_state"` is for critics), or all of its entries flattened where it has none.
The numeric fields of the environment's config are its params (`--env-params
episode_length=500`, `ctrl_dt`, `sim_dt`, `action_repeat`, ...).
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from purerl.envs.base import EnvParams
from purerl.envs.suites import (
    SuiteEnv,
    flat_observation,
    import_suite,
    numeric_items,
    settings_params,
    unknown_id,
)

PREFIX = "playground"


@struct.dataclass
class PlaygroundState:
    state: Any  # mujoco_playground State, its empty arrays as size one (`_fill`).
    time: jax.Array  # [] int32, steps into the running episode.


def _fill(tree: Any) -> Any:
    """`tree` with each empty array (MJX's `data.act` of a model without actuator states)
    made one of size one: checkpoints (orbax) cannot save empty arrays."""
    return jax.tree.map(
        lambda x: jnp.zeros([d or 1 for d in x.shape], x.dtype) if x.size == 0 else x, tree
    )


def _empty(tree: Any, template: Any) -> Any:
    """`_fill`'s inverse: the arrays `template` (shapes) has empty, empty again."""
    return jax.tree.map(lambda x, t: x[tuple(slice(0, d) for d in t.shape)], tree, template)


@functools.cache
def _playground(name: str, items: tuple[tuple[str, Any], ...]) -> Any:
    """Playground's `name` with the config fields `items`, on MJX's JAX implementation (the
    default, Warp, does not run inside purerl's jitted, vmapped loop on a CPU). Its model's
    arrays are made concrete even where this is first called inside a trace: they are
    cached with it."""
    from mujoco_playground import registry

    with jax.ensure_compile_time_eval():
        return registry.load(name, config_overrides={**dict(items), "impl": "jax"})


def _agent_obs(obs: Any) -> jax.Array:
    if isinstance(obs, dict):
        return obs["state"] if "state" in obs else flat_observation(jax.tree.leaves(obs))
    return obs


class PlaygroundEnv(SuiteEnv):
    """A MuJoCo Playground environment as a single, auto-resetting purerl environment."""

    prefix = PREFIX

    def __init__(self, name: str, params: Any):
        self.name, self._default = name, params

    @property
    def default_params(self) -> Any:
        return self._default

    def env(self, params: Any) -> Any:
        return _playground(self.name, numeric_items(params))

    def _reset(self, key: jax.Array, params: Any) -> tuple[PlaygroundState, jax.Array]:
        state = self.env(params).reset(key)
        return PlaygroundState(_fill(state), jnp.zeros((), jnp.int32)), _agent_obs(state.obs)

    def _step(
        self, key: jax.Array, state: PlaygroundState, action: jax.Array, params: Any
    ) -> tuple[PlaygroundState, jax.Array, jax.Array, jax.Array, jax.Array]:
        env = self.env(params)
        shapes = jax.eval_shape(env.reset, key)
        after = env.step(_empty(state.state, shapes), action)
        time = state.time + 1
        truncated = time >= params.episode_length
        terminated = jnp.asarray(after.done) > 0.5
        obs = _agent_obs(after.obs)
        return PlaygroundState(_fill(after), time), obs, after.reward, terminated, truncated

    def observation_space(self, params: EnvParams) -> gymnasium.spaces.Box:
        shape = self.observation_example(params).shape
        return gymnasium.spaces.Box(-np.inf, np.inf, shape, np.float32)

    def action_space(self, params: EnvParams) -> gymnasium.spaces.Box:
        return gymnasium.spaces.Box(-1.0, 1.0, (self.env(params).action_size,), np.float32)


def make_playground(name: str, **kwargs: Any) -> tuple[PlaygroundEnv, Any]:
    """Playground's environment `name`; `kwargs` set numeric fields of its config (its
    params, which `--env-params` sets too)."""
    import_suite("mujoco_playground", PREFIX, name, "playground")
    from mujoco_playground import registry

    if name not in registry.ALL_ENVS:
        raise unknown_id("MuJoCo Playground", PREFIX, name, registry.ALL_ENVS)
    config = registry.get_default_config(name)
    values = {k: v for k, v in config.items() if isinstance(v, bool | int | float)}
    params = settings_params(PREFIX, name, "PlaygroundParams", values, kwargs)
    return PlaygroundEnv(name, params), params
