"""Jumanji environments (`--env jumanji:ID`: `Snake-v1`, `Game2048-v1`, `BinPack-v2`, ...)
behind purerl's protocol, on the device loop. Jumanji is an optional extra:
`pip install -e ".[jumanji]"`.

Jumanji's `step(state, action) -> (state, timestep)` does not reset; an episode ends at a
`LAST` time step, as `truncated` (bootstrapped) where its discount is not 0 or where it
reached the environment's `time_limit` (Snake ends there with a discount of 0, as if it
had died; one that dies on that very step counts as truncated too), else as `terminated`.
The observation (a tuple of arrays) is flattened into one float32 vector with the
legal-action mask last (`EnvSpec.action_mask`). A multi-discrete action
(BinPack's `(ems, item)`) is one `Discrete` of every combination, its mask flattened alike.
The environment's numeric constructor arguments are its params (`--env-params
num_rows=6`, `time_limit=500`, ...).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from purerl.envs.base import EnvParams
from purerl.envs.suites import (
    DiscreteSuiteEnv,
    flat_observation,
    import_suite,
    numeric_items,
    settings_params,
    unknown_id,
)

PREFIX = "jumanji"
_MASK = "action_mask"


@functools.cache
def _jumanji(name: str, items: tuple[tuple[str, Any], ...]) -> Any:
    """Jumanji's `name` built with the constructor arguments `items` (one per params), its
    specs made at once: Jumanji makes them when first read, and checks them in Python,
    which fails where that is inside a trace."""
    import jumanji

    with jax.ensure_compile_time_eval():
        env = jumanji.make(name, **dict(items))
        env.observation_spec, env.action_spec  # noqa: B018 (made and cached now)
    return env


def _split_mask(observation: Any) -> tuple[list[jax.Array], jax.Array | None]:
    """The observation's arrays other than its action mask, and the mask (or None)."""
    parts, mask = [], None
    for path, leaf in jax.tree_util.tree_flatten_with_path(observation)[0]:
        if getattr(path[-1], "name", None) == _MASK:
            mask = leaf
        else:
            parts.append(leaf)
    return parts, mask


class JumanjiEnv(DiscreteSuiteEnv):
    """A Jumanji environment as a single, auto-resetting purerl environment."""

    prefix = PREFIX

    def __init__(self, name: str, params: Any):
        self.name, self._default = name, params
        env = self.env(params)
        self.action_mask = _split_mask(env.observation_spec.generate_value())[1] is not None

    @property
    def default_params(self) -> Any:
        return self._default

    def env(self, params: Any) -> Any:
        return _jumanji(self.name, numeric_items(params))

    def _nvec(self, params: Any) -> np.ndarray:
        spec = self.env(params).action_spec
        return np.atleast_1d(np.asarray(spec.num_values, np.int64))

    def num_actions(self, params: EnvParams) -> int:
        return int(np.prod(self._nvec(params)))

    def _observe(self, timestep: Any) -> jax.Array:
        return flat_observation(*_split_mask(timestep.observation))

    def _reset(self, key: jax.Array, params: Any) -> tuple[Any, jax.Array]:
        state, timestep = self.env(params).reset(key)
        return state, self._observe(timestep)

    def _step(
        self, key: jax.Array, state: Any, action: jax.Array, params: Any
    ) -> tuple[Any, jax.Array, jax.Array, jax.Array, jax.Array]:
        env, nvec = self.env(params), self._nvec(params)
        if env.action_spec.shape:  # A multi-discrete action from its flat index.
            action = jnp.stack(jnp.unravel_index(action, tuple(nvec))).astype(jnp.int32)
        state, timestep = env.step(state, action)
        last = timestep.last()
        truncated = jnp.any(timestep.discount > 0)
        limit = getattr(env, "time_limit", None)
        if limit is not None and hasattr(state, "step_count"):
            # Some (Snake) end at their time limit with a discount of 0, as a termination.
            truncated = jnp.logical_or(truncated, state.step_count >= limit)
        truncated = jnp.logical_and(last, truncated)
        terminated = jnp.logical_and(last, jnp.logical_not(truncated))
        reward = jnp.sum(timestep.reward)  # A scalar (some Jumanji envs give one per agent).
        return state, self._observe(timestep), reward, terminated, truncated

    def observation_space(self, params: EnvParams) -> gymnasium.spaces.Box:
        size = self.observation_example(params).shape
        return gymnasium.spaces.Box(-np.inf, np.inf, size, np.float32)


def _numeric_defaults(name: str) -> dict[str, Any]:
    """The numeric (and bool) arguments Jumanji's `name` is built with, and their values:
    its constructor's defaults, overridden by its registration's."""
    from jumanji import registration

    spec = registration._REGISTRY[name]
    module_name, _, attr = spec.entry_point.partition(":")
    cls = getattr(import_suite(module_name, PREFIX, name, "jumanji"), attr)
    values = {
        p.name: p.default
        for p in inspect.signature(cls.__init__).parameters.values()
        if isinstance(p.default, bool | int | float)
    }
    values.update({k: v for k, v in spec.kwargs.items() if isinstance(v, bool | int | float)})
    return values


def make_jumanji(name: str, **kwargs: Any) -> tuple[JumanjiEnv, Any]:
    """Jumanji's environment `name`; `kwargs` set its numeric constructor arguments (its
    params, which `--env-params` sets too)."""
    jumanji = import_suite("jumanji", PREFIX, name, "jumanji")
    known = sorted(jumanji.registered_environments())
    if name not in known:
        raise unknown_id("Jumanji", PREFIX, name, known)
    params = settings_params(
        PREFIX, name, f"{name.split('-')[0]}Params", _numeric_defaults(name), kwargs
    )
    env = JumanjiEnv(name, params)
    return env, params
