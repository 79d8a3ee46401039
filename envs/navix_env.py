"""Navix environments (`--env navix:ID`: `Navix-Empty-5x5-v0`, `Navix-DoorKey-6x6-v0`, ...),
MiniGrid in JAX, behind purerl's protocol on the device loop. Navix is an optional extra:
`pip install -e ".[navix]"`.

Navix resets an ended episode on the step after it; here the step that ends it resets it,
its last observation kept in `info["final_observation"]`. Navix's termination (the goal
reached, or lava) is `terminated`; its `max_steps` limit is `truncated`. The observation is
Navix's own, an image `[H, W, C]`: symbolic by default (object, colour and state ids, which
the agent sees as float32 numbers, not as uint8 pixels it would scale to [0, 1]), or RGB
pixels (uint8) for a Navix `observation_fn` that renders them. Params: `max_steps` (100),
`penality_coeff` (Navix's penalty for the steps a terminated episode took) and
`random_start`.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from purerl.envs.base import EnvParams
from purerl.envs.suites import (
    DiscreteSuiteEnv,
    box_like,
    import_suite,
    numeric_items,
    settings_params,
    unknown_id,
)

PREFIX = "navix"
_PARAMS = ("max_steps", "penality_coeff", "random_start")
_TRUNCATION, _TERMINATION = 1, 2  # Navix's step types.


@functools.cache
def _navix(name: str, items: tuple[tuple[str, Any], ...]) -> Any:
    """Navix's `name` with the settings `items` (one per params field)."""
    import navix

    values = dict(items)
    env = navix.make(name, max_steps=values.pop("max_steps"))
    return env.replace(**values)


class NavixEnv(DiscreteSuiteEnv):
    """A Navix environment as a single, auto-resetting purerl environment."""

    prefix = PREFIX

    def __init__(self, name: str, params: Any):
        self.name, self._default = name, params

    @property
    def default_params(self) -> Any:
        return self._default

    def env(self, params: Any) -> Any:
        return _navix(self.name, numeric_items(params))

    def num_actions(self, params: EnvParams) -> int:
        return len(self.env(params).action_set)

    def _pixels(self, params: Any) -> bool:
        """Whether the observation is uint8 pixels (else ids, given to the agent as float32)."""
        return np.asarray(self.env(params).observation_space.maximum).item() >= 255

    def _observe(self, timestep: Any, params: Any) -> jax.Array:
        obs = timestep.observation
        return obs if self._pixels(params) else obs.astype(jnp.float32)

    def _reset(self, key: jax.Array, params: Any) -> tuple[Any, jax.Array]:
        timestep = self.env(params).reset(key)
        return timestep, self._observe(timestep, params)

    def _step(
        self, key: jax.Array, state: Any, action: jax.Array, params: Any
    ) -> tuple[Any, jax.Array, jax.Array, jax.Array, jax.Array]:
        # `_step`, not `step`: Navix's `step` would reset where the previous step ended.
        timestep = self.env(params)._step(state, action)
        terminated = timestep.step_type == _TERMINATION
        truncated = timestep.step_type == _TRUNCATION
        return timestep, self._observe(timestep, params), timestep.reward, terminated, truncated

    def observation_space(self, params: EnvParams) -> gymnasium.spaces.Box:
        space = self.env(params).observation_space
        low, high = np.asarray(space.minimum).item(), np.asarray(space.maximum).item()
        return box_like(self.observation_example(params), low, high)


def make_navix(name: str, **kwargs: Any) -> tuple[NavixEnv, Any]:
    """Navix's environment `name`; `kwargs` set its params (`max_steps`, `penality_coeff`,
    `random_start`), which `--env-params` sets too."""
    navix = import_suite("navix", PREFIX, name, "navix")
    known = list(navix.registry())
    if name not in known:
        raise unknown_id("Navix", PREFIX, name, known)
    env = navix.make(name)
    defaults = {k: getattr(env, k) for k in _PARAMS}
    defaults = {
        k: v.item() if isinstance(v, jnp.ndarray | np.ndarray) else v for k, v in defaults.items()
    }
    params = settings_params(PREFIX, name, "NavixParams", defaults, kwargs)
    return NavixEnv(name, params), params
