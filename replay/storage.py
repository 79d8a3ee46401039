"""Replay storage for whole rollouts, each observation stored once.

A rollout `[T, B]` is written time-major into slots `index + t * B + b`, so a transition's
next observation is simply the observation in the slot `B` further on. Only where that is
not the next observation is anything more kept:

- a step cut by a time limit (`truncated`, not `terminated`) bootstraps from the ended
  episode's final observation, which the auto-reset replaced: those go to a small ring
  table (`final_capacity` entries, a sixteenth of the capacity by default), found through a
  per-slot pointer;
- the newest row has no successor yet: its next observations are kept beside (`B` of them).

A terminated step's next observation is never used (its discount is 0), so the slot after
it (the next episode's first observation) stands in. A truncated step whose final
observation was pushed out of the ring table (more truncations in the buffer than
`final_capacity`) comes back with weight 0, so it never trains on a wrong bootstrap.

Items that are not `Transition`s (any pytree) are stored as they are.
`bytes_per_slot` reports what a slot costs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from purerl.core import Transition
from purerl.replay.base import flatten_time


@struct.dataclass
class CompactTransitions:
    steps: Transition  # Leaves [capacity, ...]; `next_obs` is () (see the module doc).
    final_ptr: jax.Array  # [capacity] int32, where a truncated step's final obs is (-1: none).
    final_obs: Any  # [final_capacity, *obs]: final observations of truncated steps.
    final_owner: jax.Array  # [final_capacity] int32, the slot each final obs belongs to.
    final_index: jax.Array  # [] int32, the table's next entry to write.
    tail_next: Any  # [B, *obs]: the next observations of the newest row.


def capacity_of(storage: Any) -> int:
    if isinstance(storage, CompactTransitions):
        return storage.final_ptr.shape[0]
    return jax.tree.leaves(storage)[0].shape[0]


def store_init(
    example: Any, capacity: int, min_size: int, final_capacity: int | None = None
) -> Any:
    """Storage for rollouts shaped like `example[T, B, ...]`. The capacity is rounded down to
    a whole number of rollouts, so every add is one in-place slice per leaf and never wraps."""
    leaves = jax.tree.leaves(example)
    num = int(leaves[0].shape[0] * leaves[0].shape[1])
    rounded = capacity // num * num
    if rounded < max(min_size, 1):
        raise ValueError(
            f"A replay capacity of {capacity} holds {capacity // num} rollouts of {num} "
            f"transitions, fewer than the {min_size} needed to sample; raise the buffer size."
        )

    def zeros(x: Any, size: int) -> jax.Array:
        return jnp.zeros((size,) + jnp.shape(x)[2:], jnp.asarray(x).dtype)

    if not isinstance(example, Transition):
        return jax.tree.map(lambda x: zeros(x, rounded), example)
    table = max(1, rounded // 16 if final_capacity is None else int(final_capacity))
    num_envs = int(leaves[0].shape[1])
    return CompactTransitions(
        steps=jax.tree.map(lambda x: zeros(x, rounded), example._replace(next_obs=())),
        final_ptr=jnp.full((rounded,), -1, jnp.int32),
        final_obs=jax.tree.map(lambda x: zeros(x, table), example.next_obs),
        final_owner=jnp.full((table,), -1, jnp.int32),
        final_index=jnp.zeros((), jnp.int32),
        tail_next=jax.tree.map(lambda x: zeros(x, num_envs), example.next_obs),
    )


def _write(storage: Any, items: Any, index: jax.Array) -> Any:
    return jax.tree.map(
        lambda s, x: jax.lax.dynamic_update_slice_in_dim(s, x, index, axis=0), storage, items
    )


def store_write(storage: Any, trajectory: Any, index: jax.Array) -> tuple[Any, int]:
    """Writes a rollout `[T, B, ...]` at slot `index` (a multiple of `T * B`, as `store_init`
    keeps it); returns the storage and `T * B`."""
    items = flatten_time(trajectory)
    num = jax.tree.leaves(items)[0].shape[0]
    if capacity_of(storage) % num:
        raise ValueError(
            f"add: a rollout of {num} transitions where the buffer was made for rollouts "
            f"dividing its {capacity_of(storage)} slots; add rollouts shaped like init's example."
        )
    if not isinstance(storage, CompactTransitions):
        return _write(storage, items, index), num
    num_envs = trajectory.reward.shape[1]
    table = storage.final_owner.shape[0]
    cut = items.truncated & ~items.terminated
    order = jnp.cumsum(cut.astype(jnp.int32)) - 1
    entry = jnp.where(cut, (storage.final_index + order) % table, table)  # table: dropped.
    slots = index + jnp.arange(num, dtype=jnp.int32)
    return (
        CompactTransitions(
            steps=_write(storage.steps, items._replace(next_obs=()), index),
            final_ptr=_write(storage.final_ptr, jnp.where(cut, entry, -1), index),
            final_obs=jax.tree.map(
                lambda t, x: t.at[entry].set(x, mode="drop"), storage.final_obs, items.next_obs
            ),
            final_owner=storage.final_owner.at[entry].set(slots, mode="drop"),
            final_index=(storage.final_index + jnp.sum(cut, dtype=jnp.int32)) % table,
            tail_next=jax.tree.map(lambda x: x[-num_envs:], items.next_obs),
        ),
        num,
    )


def store_gather(storage: Any, idx: jax.Array, index: jax.Array) -> tuple[Any, jax.Array]:
    """The items in slots `idx[N]` (`index`: the next slot to write), and whether each is
    valid (False only for a truncated step whose final observation was evicted)."""

    def take(x: jax.Array, i: jax.Array) -> jax.Array:
        return x.at[i].get(mode="promise_in_bounds")

    if not isinstance(storage, CompactTransitions):
        return jax.tree.map(lambda s: take(s, idx), storage), jnp.ones(idx.shape, bool)
    capacity = capacity_of(storage)
    num_envs = jax.tree.leaves(storage.tail_next)[0].shape[0]
    steps = jax.tree.map(lambda s: take(s, idx), storage.steps)
    newest = (idx - (index - num_envs)) % capacity < num_envs
    successor = (idx + num_envs) % capacity
    ptr = take(storage.final_ptr, idx)
    safe = jnp.maximum(ptr, 0)
    final = (ptr >= 0) & (take(storage.final_owner, safe) == idx)

    def next_obs(obs: jax.Array, tail: jax.Array, table: jax.Array) -> jax.Array:
        def where(mask: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
            return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)

        following = where(newest, take(tail, idx % num_envs), take(obs, successor))
        return where(final, take(table, safe), following)

    items = steps._replace(
        next_obs=jax.tree.map(next_obs, storage.steps.obs, storage.tail_next, storage.final_obs)
    )
    return items, (ptr < 0) | final


def bytes_per_slot(storage: Any) -> float:
    """Bytes of storage per transition slot, the side tables shared out over the slots."""
    total = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(storage))
    return total / capacity_of(storage)
