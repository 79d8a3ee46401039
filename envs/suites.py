"""What the adapters of JAX environment suites share (`jumanji:ID`, `navix:ID`,
`xminigrid:ID`, `pgx:ID`, `craftax:ID`; one module each, `purerl.envs.jumanji_env`, ...).

Each suite steps its own way and none resets itself the way purerl's protocol does, so
`SuiteEnv` holds the protocol once: a subclass says how its suite resets and steps one
episode (`_reset`, `_step`: the suite's state, the agent's observation, and whether the
episode ended as `terminated` or as `truncated`), and `SuiteEnv.step` resets an ended
episode in the same step, keeping its last observation in `info["final_observation"]`.

Observations reach the agent as the host loop gives them (`purerl.envs.host`): one image
stays `[H, W, C]`; anything structured is flattened into one float32 vector. A suite that
says which actions are legal (Jumanji, Pgx) appends that mask, 1.0 for a legal action, as
the last `num_actions` entries of the vector and sets `action_mask`, which `env_spec`
hands the agent as `EnvSpec.action_mask` (see `purerl.core.legal_actions`).
"""

from __future__ import annotations

import abc
import difflib
import importlib
from collections.abc import Sequence
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from purerl.envs.base import EnvParams, StepResult


def import_suite(module: str, prefix: str, name: str, package: str) -> Any:
    """Imports a suite's `module`, or a clear error naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ValueError(
            f"--env {prefix}:{name} needs {package}, which is not installed ({e}). It is an "
            f'optional extra: pip install -e ".[{prefix}]" (or pip install {package}).'
        ) from None


def unknown_id(suite: str, prefix: str, name: str, known: Sequence[str]) -> ValueError:
    """The error for an id `suite` does not have: the closest ones, then all of them."""
    close = difflib.get_close_matches(name, list(known), n=3)
    hint = f" Did you mean {', '.join(f'{prefix}:{c}' for c in close)}?" if close else ""
    return ValueError(
        f"Unknown {suite} environment {name!r}.{hint} {suite} has: "
        f"{', '.join(f'{prefix}:{k}' for k in sorted(known))}."
    )


def static_params(class_name: str, values: dict[str, Any]) -> Any:
    """A frozen params dataclass with one static field per entry of `values` (numbers or
    bools: grid sizes, time limits).

    These are a suite's constructor arguments: they fix array shapes, so they are static
    (part of the params' tree structure, constants under `jit`, not leaves to vmap over).
    `--env-params FIELD=VALUE` replaces one like any params field (`registry.with_params`)
    and the adapter builds the suite's environment from the params it is given."""
    namespace: dict[str, Any] = {"__annotations__": {k: type(v) for k, v in values.items()}}
    namespace.update({k: struct.field(pytree_node=False, default=v) for k, v in values.items()})
    return struct.dataclass(type(class_name, (), namespace))()


def settings_params(
    prefix: str, name: str, class_name: str, defaults: dict[str, Any], given: dict[str, Any]
) -> Any:
    """`static_params` of a suite's numeric settings: `defaults` with `given` (the make
    call's keyword arguments) on top, where each names a setting `defaults` has; an unknown
    one is refused with the list."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(
            f"{prefix}:{name} has no numeric setting {', '.join(map(repr, unknown))}; its "
            f"settings are {', '.join(defaults) or 'none'}."
        )
    return static_params(class_name, {**defaults, **given})


def numeric_items(params: Any) -> tuple[tuple[str, Any], ...]:
    """The fields of a `static_params` dataclass as a hashable `((name, value), ...)`."""
    return tuple((k, getattr(params, k)) for k in params.__dataclass_fields__)


def flat_observation(parts: Sequence[jax.Array], mask: jax.Array | None = None) -> jax.Array:
    """`parts` raveled into one float32 vector, then `mask` (the legal actions) as 1.0/0.0."""
    tail = [] if mask is None else [jnp.ravel(mask)]
    return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in [*parts, *tail]])


def select(pick_new: jax.Array, new: Any, old: Any) -> Any:
    """`new` where `pick_new`, else `old`, leaf by leaf."""
    return jax.tree.map(lambda a, b: jnp.where(pick_new, a, b), new, old)


def box_like(example: jax.ShapeDtypeStruct, low: float = -np.inf, high: float = np.inf) -> Any:
    """A Box of `example`'s shape and dtype (float32 unless it is an integer image)."""
    dtype = np.dtype(example.dtype)
    if not np.issubdtype(dtype, np.integer):
        dtype = np.dtype(np.float32)
    return gymnasium.spaces.Box(low, high, tuple(example.shape), dtype)


class SuiteEnv(abc.ABC):
    """A suite's single environment behind purerl's protocol, auto-resetting.

    Subclasses set `name` and `prefix` and say how their suite resets and steps one episode
    and what its spaces are (the abstract methods); `action_mask` is True where the
    observation ends with the legal-action mask.
    """

    name: str
    prefix: str
    action_mask: bool = False

    @abc.abstractmethod
    def _reset(self, key: jax.Array, params: EnvParams) -> tuple[Any, jax.Array]:
        """`(the suite's state, the agent's observation)` of a new episode."""

    @abc.abstractmethod
    def _step(
        self, key: jax.Array, state: Any, action: jax.Array, params: EnvParams
    ) -> tuple[Any, jax.Array, jax.Array, jax.Array, jax.Array]:
        """`(state, obs, reward, terminated, truncated)` of one step, without resetting."""

    @abc.abstractmethod
    def observation_space(self, params: EnvParams) -> gymnasium.spaces.Box: ...

    @abc.abstractmethod
    def action_space(self, params: EnvParams) -> gymnasium.spaces.Space: ...

    def reset(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, Any]:
        state, obs = self._reset(key, params)
        return obs, state

    def step(self, key: jax.Array, state: Any, action: jax.Array, params: EnvParams) -> StepResult:
        step_key, reset_key = jax.random.split(key)
        after, obs, reward, terminated, truncated = self._step(step_key, state, action, params)
        truncated = jnp.logical_and(truncated, jnp.logical_not(terminated))
        fresh, fresh_obs = self._reset(reset_key, params)
        done = jnp.logical_or(terminated, truncated)
        return (
            select(done, fresh_obs, obs),
            select(done, fresh, after),
            jnp.asarray(reward, jnp.float32),
            terminated,
            truncated,
            {"final_observation": obs},
        )

    def observation_example(self, params: EnvParams) -> jax.ShapeDtypeStruct:
        """The observation's shape and dtype, traced (not run)."""
        key = jax.ShapeDtypeStruct((2,), jnp.uint32)
        return jax.eval_shape(lambda k: self._reset(k, params)[1], key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.prefix}:{self.name})"


class DiscreteSuiteEnv(SuiteEnv):
    """A suite environment whose actions are `Discrete(num_actions(params))`."""

    @abc.abstractmethod
    def num_actions(self, params: EnvParams) -> int: ...

    def action_space(self, params: EnvParams) -> gymnasium.spaces.Discrete:
        return gymnasium.spaces.Discrete(self.num_actions(params))
