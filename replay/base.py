"""The data path: how experience reaches `learn`, declared by each agent.

An on-policy rollout, uniform replay and prioritised replay are all a `DataPath` of pure
functions over a pytree state, the way optax's `identity()` sits beside real transforms: the
loops store every rollout with `add`, draw each gradient step's batch with `sample`, and
hand what `learn` returned to `update` (a prioritised path writes the priorities back), with
no branch on which path it is. `Schedule` says how often: env steps per update, gradient
steps per update, random warm-up steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

DataState = Any  # A pytree.


class Sample(NamedTuple):
    """A replay batch.

    Attributes:
      items: the sampled transitions, leaves `[N, ...]`.
      indices: where they sit in the buffer `[N]` int32 (for writing priorities back).
      weights: importance-sampling weights `[N]` float32 (ones for uniform sampling).
    """

    items: Any
    indices: jax.Array
    weights: jax.Array


class DataPath(NamedTuple):
    """How experience reaches `learn`: pure functions over a pytree state.

    Attributes:
      init: `(example_trajectory[T, B, ...]) -> state`; the example gives shapes and dtypes.
      add: `(state, trajectory[T, B, ...]) -> state`, after each rollout.
      sample: `(state, key) -> batch`, what one `learn` call takes.
      can_sample: `(state) -> bool[]`, whether learning may start (a Python bool when it is
        known without looking at the state).
      update: `(state, batch, metrics) -> state`, after each `learn`, with its metrics.
      on_policy: `learn` may only see the rollout the current parameters just acted (the
        host loop then never lets acting run ahead of learning); False for replay, which
        learns from older experience anyway.
    """

    init: Callable[[Any], DataState]
    add: Callable[[DataState, Any], DataState]
    sample: Callable[[DataState, jax.Array], Any]
    can_sample: Callable[[DataState], jax.Array]
    update: Callable[[DataState, Any, dict[str, jax.Array]], DataState]
    on_policy: bool = False


class Schedule(NamedTuple):
    """When an agent learns.

    Attributes:
      rollout_length: vector env steps between updates (per env).
      gradient_steps: `sample` + `learn` calls per update, once `can_sample`.
      warmup_steps: env steps (per seed, over all devices) acted uniformly at random
        before the agent's own `act` takes over.
    """

    rollout_length: int
    gradient_steps: int = 1
    warmup_steps: int = 0


def keep(state: DataState, batch: Any, metrics: dict[str, jax.Array]) -> DataState:
    """The `update` of paths that ignore what `learn` returned."""
    del batch, metrics
    return state


def flatten_time(trajectory: Any) -> Any:
    """`[T, B, ...]` -> `[T * B, ...]`."""
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), trajectory)


def on_policy() -> DataPath:
    """The on-policy data path: each update learns from exactly the rollout just collected,
    time-major `[T, B]`. Its state is that rollout."""
    import jax.numpy as jnp

    return DataPath(
        init=lambda example: jax.tree.map(jnp.zeros_like, example),
        add=lambda state, trajectory: trajectory,
        sample=lambda state, key: state,
        can_sample=lambda state: True,  # A Python bool: the loops then stage no conditional.
        update=keep,
        on_policy=True,
    )
