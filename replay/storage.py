"""Replay storage for whole rollouts, each observation stored once.

A rollout `[T, B]` is written time-major into slots `index + t * B + b`, so a transition's
next observation is simply the observation in the slot `B` further on. Only where that is
not the next observation is anything more kept:

- a step cut by a time limit (`truncated`, not `terminated`) bootstraps from the ended
  episode's final observation, which the auto-reset replaced: those go to a small ring
  table (`final_capacity` entries, a sixteenth of the capacity by default), found through a
  per-slot pointer;
- the newest row has no successor yet, so it is not sampled until the next rollout is added
  (`unready`: the data paths sample the other slots).

Sequence replay reads windows of `L` consecutive steps of one env (`store_gather_sequence`):
slots `i, i + B, ..., i + (L - 1) B`, each with its next observation as above, for n-step
targets and recurrent learners. A window may cross an episode end (its `terminated` and
`truncated` flags say where); the newest `L` rows are then unready, so every window's steps
and successors have arrived.

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
from purerl.core import Transition, require_positive
from purerl.replay.base import flatten_time


@struct.dataclass
class CompactTransitions:
    steps: Transition  # Leaves [capacity, ...]; `next_obs` is () (see the module doc).
    final_ptr: jax.Array  # [capacity] int32, where a truncated step's final obs is (-1: none).
    final_obs: Any  # [final_capacity, *obs]: final observations of truncated steps.
    final_owner: jax.Array  # [final_capacity] int32, the slot each final obs belongs to.
    final_index: jax.Array  # [] int32, the table's next entry to write.
    row: int = struct.field(pytree_node=False)  # B, the envs of one time step.
    length: int = struct.field(pytree_node=False, default=1)  # L, steps per sampled window.


def check_sizes(capacity: int, batch_size: int, min_size: int | None) -> tuple[int, int, int]:
    """A replay buffer's `(capacity, batch_size, min_size)` as ints (`min_size` defaults to
    `batch_size`), or a clear error where a buffer of those sizes could never sample."""
    capacity = require_positive(capacity, "Replay capacity")
    batch_size = require_positive(batch_size, "Replay batch_size")
    min_size = batch_size if min_size is None else int(min_size)
    if batch_size > capacity:
        raise ValueError(
            f"Replay batch_size ({batch_size}) is larger than its capacity ({capacity}); "
            "raise the buffer size or lower the batch size."
        )
    if not batch_size <= min_size <= capacity:
        raise ValueError(
            f"Replay min_size ({min_size}) must lie between batch_size ({batch_size}) and "
            f"capacity ({capacity}); raise the buffer size or lower the batch size."
        )
    return capacity, batch_size, min_size


def ready_to_sample(storage: Any, size: jax.Array, min_size: int) -> jax.Array:
    """Whether `min_size` items can be sampled (of the `size` stored, all but the `unready`
    newest), or, if a full buffer offers fewer, all it can."""
    ready = capacity_of(storage) - unready(storage)
    return size - unready(storage) >= min(min_size, ready)


def unready(storage: Any) -> int:
    """How many of the newest slots cannot be sampled yet (their next observation, or the
    rest of their window, arrives with the next rollouts): `L` rows of envs for transitions
    read in windows of `L`, none for other items."""
    return storage.row * storage.length if isinstance(storage, CompactTransitions) else 0


def capacity_of(storage: Any) -> int:
    if isinstance(storage, CompactTransitions):
        return storage.final_ptr.shape[0]
    return jax.tree.leaves(storage)[0].shape[0]


def store_init(
    example: Any,
    capacity: int,
    min_size: int,
    final_capacity: int | None = None,
    sequence_length: int = 1,
) -> Any:
    """Storage for rollouts shaped like `example[T, B, ...]`. The capacity is rounded up to a
    whole number of rollouts, so every add is one in-place slice per leaf and never wraps
    (and a buffer holds at least what was asked for).
    `sequence_length` is the window `L` that `store_gather_sequence` will read (transitions
    only)."""
    length = int(sequence_length)
    if length < 1:
        raise ValueError(f"A replay window must hold at least one step; got {length}.")
    leaves = jax.tree.leaves(example)
    num = int(leaves[0].shape[0] * leaves[0].shape[1])
    rounded = -(-int(capacity) // num) * num
    if rounded < max(min_size, 1):
        raise ValueError(
            f"A replay capacity of {capacity} holds {rounded // num} rollouts of {num} "
            f"transitions, fewer than the {min_size} needed to sample; raise the buffer size."
        )

    def zeros(x: Any, size: int) -> jax.Array:
        return jnp.zeros((size,) + jnp.shape(x)[2:], jnp.asarray(x).dtype)

    if not isinstance(example, Transition):
        if length != 1:
            raise ValueError(
                "Windows of steps (sequence replay) need `Transition` items, whose time "
                f"order the buffer knows; got {type(example).__name__}."
            )
        return jax.tree.map(lambda x: zeros(x, rounded), example)
    table = max(1, rounded // 16 if final_capacity is None else int(final_capacity))
    num_envs = int(leaves[0].shape[1])
    if rounded < num + num_envs * length:
        raise ValueError(
            f"A replay capacity of {capacity} has no room for a rollout of {num} transitions "
            f"beside the newest {num_envs * length}, which wait for their next observations "
            "(or the rest of their window); raise the buffer size."
        )
    return CompactTransitions(
        steps=jax.tree.map(lambda x: zeros(x, rounded), example._replace(next_obs=())),
        final_ptr=jnp.full((rounded,), -1, jnp.int32),
        final_obs=jax.tree.map(lambda x: zeros(x, table), example.next_obs),
        final_owner=jnp.full((table,), -1, jnp.int32),
        final_index=jnp.zeros((), jnp.int32),
        row=num_envs,
        length=length,
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
    table = storage.final_owner.shape[0]
    cut = items.truncated & ~items.terminated
    order = jnp.cumsum(cut.astype(jnp.int32)) - 1
    count = jnp.sum(cut, dtype=jnp.int32)
    # Which items were cut, in order (the rest of the array is padding).
    cut_items = (
        jnp.zeros((num,), jnp.int32)
        .at[jnp.where(cut, order, num)]
        .set(jnp.arange(num, dtype=jnp.int32), mode="drop")
    )

    def keep_final(i: jax.Array, tables: tuple[Any, jax.Array]) -> tuple[Any, jax.Array]:
        # One table entry per truncation: usually none in an add, so this loop costs nothing
        # where a scatter of every item (dropped or not) would read all their observations.
        final_obs, owner = tables
        source, entry = cut_items[i], (storage.final_index + i) % table
        final_obs = jax.tree.map(
            lambda t, x: jax.lax.dynamic_update_index_in_dim(t, x[source], entry, 0),
            final_obs,
            items.next_obs,
        )
        return final_obs, owner.at[entry].set(index + source)

    final_obs, final_owner = jax.lax.fori_loop(
        0, count, keep_final, (storage.final_obs, storage.final_owner)
    )
    entry = (storage.final_index + order) % table
    return (
        CompactTransitions(
            steps=_write(storage.steps, items._replace(next_obs=()), index),
            final_ptr=_write(storage.final_ptr, jnp.where(cut, entry, -1), index),
            final_obs=final_obs,
            final_owner=final_owner,
            final_index=(storage.final_index + count) % table,
            row=storage.row,
            length=storage.length,
        ),
        num,
    )


def store_gather(storage: Any, idx: jax.Array) -> tuple[Any, jax.Array]:
    """The items in slots `idx[N]` (none of the `unready` newest), and whether each is valid
    (False only for a truncated step whose final observation was evicted)."""

    def take(x: jax.Array, i: jax.Array) -> jax.Array:
        return x.at[i].get(mode="promise_in_bounds")

    if not isinstance(storage, CompactTransitions):
        return jax.tree.map(lambda s: take(s, idx), storage), jnp.ones(idx.shape, bool)
    capacity = capacity_of(storage)
    steps = jax.tree.map(lambda s: take(s, idx), storage.steps)
    successor = (idx + storage.row) % capacity
    ptr = take(storage.final_ptr, idx)
    safe = jnp.maximum(ptr, 0)
    final = (ptr >= 0) & (take(storage.final_owner, safe) == idx)

    def next_obs(obs: jax.Array, table: jax.Array) -> jax.Array:
        mask = final.reshape(final.shape + (1,) * (obs.ndim - 1))
        return jnp.where(mask, take(table, safe), take(obs, successor))

    items = steps._replace(next_obs=jax.tree.map(next_obs, storage.steps.obs, storage.final_obs))
    return items, (ptr < 0) | final


def store_gather_sequence(storage: Any, idx: jax.Array) -> tuple[Any, jax.Array]:
    """Windows of `L` (the storage's `sequence_length`) consecutive steps of one env, starting
    at slots `idx[N]` (none of the `unready` newest): `Transition`s with leaves `[N, L, ...]`,
    and whether each window is valid `[N]`.

    A window is invalid only where a step it uses (one at or before its first episode end)
    is a truncation whose final observation was evicted; steps after an episode end belong
    to the next episode and are the learner's to mask (by `terminated | truncated`).
    """
    if not isinstance(storage, CompactTransitions):
        raise ValueError("Windows of steps (sequence replay) need storage made for Transitions.")
    length, capacity = storage.length, capacity_of(storage)
    slots = (idx[:, None] + storage.row * jnp.arange(length, dtype=idx.dtype)) % capacity
    items, valid = store_gather(storage, slots.reshape(-1))
    items = jax.tree.map(lambda x: x.reshape(slots.shape + x.shape[1:]), items)
    done = (items.terminated | items.truncated).astype(jnp.int32)
    after_end = (jnp.cumsum(done, axis=1) - done) > 0
    return items, jnp.all(valid.reshape(slots.shape) | after_end, axis=1)


def bytes_per_slot(storage: Any) -> float:
    """Bytes of storage per transition slot, the side tables shared out over the slots."""
    total = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(storage))
    return total / capacity_of(storage)
