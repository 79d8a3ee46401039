"""Checks that an environment returns what its spaces declare, on its first reset and step.

A user's environment whose observations do not match its observation space otherwise fails
far from the cause: deep in Gymnasium's vector API ("Output array is the wrong shape") for a
host environment, or in XLA ("scan body function carry input and carry output must have
equal types") for a JAX one. These checks name the environment, the call and both shapes.
JAX environments are checked abstractly (`jax.eval_shape`: traced, never run); host ones on
the first reset and step each copy makes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

_FIX = "Return observations of the declared shape, or declare the shape they have."


class EnvCheckError(ValueError):
    """An environment returned something other than what its spaces declare."""


def _shape(x: Any) -> tuple[int, ...]:
    shape = getattr(x, "shape", None)  # An array or a jax.ShapeDtypeStruct.
    return tuple(int(d) for d in (np.shape(x) if shape is None else shape))


def _mismatches(obs: Any, space: spaces.Space, what: str, path: str = "") -> Iterator[str]:
    """What in `obs` (called `what`) does not have the shape `space` declares, one phrase
    each."""
    if isinstance(space, spaces.Dict):
        if not isinstance(obs, Mapping) or set(obs) != set(space.spaces):
            is_map = isinstance(obs, Mapping)
            got = f"with keys {sorted(obs)}" if is_map else f"of type {type(obs).__name__}"
            yield f"{what}{path} {got}, observation_space{path} has keys {sorted(space.spaces)}"
            return
        for k, sub in space.spaces.items():
            yield from _mismatches(obs[k], sub, what, f"{path}[{k!r}]")
    elif isinstance(space, spaces.Tuple):
        if not isinstance(obs, Sequence) or len(obs) != len(space.spaces):
            is_seq = isinstance(obs, Sequence)
            got = f"of length {len(obs)}" if is_seq else f"of type {type(obs).__name__}"
            yield f"{what}{path} {got}, observation_space{path} is a Tuple of {len(space)}"
            return
        for i, sub in enumerate(space.spaces):
            yield from _mismatches(obs[i], sub, what, f"{path}[{i}]")
    elif isinstance(
        space, spaces.Box | spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary
    ):
        got, want = _shape(obs), tuple(space.shape)
        if got != want:
            yield f"{what}{path} shape {got}, observation_space{path} is {want}"


def check_observation(
    obs: Any, space: spaces.Space, name: str, call: str, what: str = "observation"
) -> None:
    """Raises `EnvCheckError` when `obs` (arrays, or `jax.ShapeDtypeStruct`s) does not have
    the shapes `space` declares: "NAME: step returned observation shape (3,),
    observation_space is (1,)."."""
    for mismatch in _mismatches(obs, space, what):
        raise EnvCheckError(f"{name}: {call} returned {mismatch}. {_FIX}")


# --------------------------------------------------------------------------------------
# JAX environments


def _example_action(space: spaces.Space) -> jax.ShapeDtypeStruct:
    """An action of `space` as the loops pass one: int32 indices, float32 vectors."""
    dtype = jnp.float32 if isinstance(space, spaces.Box) else jnp.int32
    return jax.ShapeDtypeStruct(tuple(space.shape or ()), dtype)


def check_jax_env(env: Any, params: Any, name: str) -> None:
    """Checks a JAX environment's `reset` and `step` against its spaces, abstractly (traced
    with `jax.eval_shape`, not run): observations of the observation space's shape, a step
    state of reset's structure, shapes and dtypes (the loops carry it through `lax.scan`),
    scalar reward and flags, and `info["final_observation"]`. Raises `EnvCheckError`."""
    observation_space, action_space = env.observation_space(params), env.action_space(params)
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)  # A raw `jax.random.PRNGKey`.
    obs, state = jax.eval_shape(lambda k: env.reset(k, params), key)
    check_observation(obs, observation_space, name, "reset")
    step = jax.eval_shape(
        lambda k, s, a: env.step(k, s, a, params), key, state, _example_action(action_space)
    )
    if not isinstance(step, tuple) or len(step) != 6:
        raise EnvCheckError(
            f"{name}: step returned {type(step).__name__}"
            f"{f' of {len(step)}' if isinstance(step, tuple) else ''}; purerl's protocol "
            "(gymnax 1.0's) returns (obs, state, reward, terminated, truncated, info)."
        )
    next_obs, next_state, reward, terminated, truncated, info = step
    check_observation(next_obs, observation_space, name, "step")
    final = info.get("final_observation") if isinstance(info, Mapping) else None
    if final is None:
        raise EnvCheckError(
            f"{name}: step's info has no 'final_observation'. Put the last observation of the "
            "episode there (when one ends, step's obs is already the next episode's), as "
            "purerl.envs.base describes."
        )
    check_observation(final, observation_space, name, "step", "info['final_observation']")
    _check_same(obs, next_obs, "observation", name)
    for what, value in (("reward", reward), ("terminated", terminated), ("truncated", truncated)):
        if _shape(value) != ():
            raise EnvCheckError(
                f"{name}: step returned {what} shape {_shape(value)}; it must be a scalar "
                "(one environment, unbatched: purerl vmaps it)."
            )
    _check_same(state, next_state, "state", name)


def _check_same(before: Any, after: Any, what: str, name: str) -> None:
    """Raises `EnvCheckError` unless step's `after` (its observation or state) has the
    structure, shapes and dtypes of reset's `before`, as `lax.scan` carries them."""
    fix = f"The {what} step returns must have reset's structure, shapes and dtypes."
    leaves, tree = jax.tree_util.tree_flatten_with_path(before)
    next_leaves, next_tree = jax.tree_util.tree_flatten_with_path(after)
    if tree != next_tree:
        raise EnvCheckError(
            f"{name}: step returned a {what} of another structure than reset's "
            f"({next_tree} against {tree}). {fix}"
        )
    for (path, a), (_, b) in zip(leaves, next_leaves, strict=True):
        if (_shape(a), a.dtype) != (_shape(b), b.dtype):
            raise EnvCheckError(
                f"{name}: step returned {what}{jax.tree_util.keystr(path)} of shape {_shape(b)} "
                f"and dtype {b.dtype}; reset's is {_shape(a)} {a.dtype}. {fix}"
            )


# --------------------------------------------------------------------------------------
# Host (Gymnasium) environments


class FirstStepsCheck(gymnasium.Wrapper):
    """Checks a host environment's observations against its observation space on its first
    reset and its first step (later ones pass through unchecked), before Gymnasium's vector
    API copies them into its batch."""

    def __init__(self, env: gymnasium.Env, name: str):
        super().__init__(env)
        self.name = name
        self._reset_checked = self._step_checked = False

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        if not self._reset_checked:
            check_observation(obs, self.env.observation_space, self.name, "reset")
            self._reset_checked = True
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        result = self.env.step(action)
        if not self._step_checked:
            check_observation(result[0], self.env.observation_space, self.name, "step")
            self._step_checked = True
        return result
