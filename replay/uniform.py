"""Uniform experience replay: a jittable ring buffer of whole rollouts (`replay.storage`) as
a data path, pure functions over a pytree state."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from purerl.replay.base import DataPath, Sample, keep
from purerl.replay.storage import (
    capacity_of,
    check_sizes,
    ready_to_sample,
    store_gather,
    store_gather_sequence,
    store_init,
    store_write,
    unready,
)


@struct.dataclass
class BufferState:
    storage: Any  # Leaves [capacity, ...]: preallocated transitions (`replay.storage`).
    index: jax.Array  # [] int32, the next slot to write.
    size: jax.Array  # [] int32, how many slots hold data (<= capacity).


def uniform_replay(
    capacity: int,
    batch_size: int,
    min_size: int | None = None,
    final_capacity: int | None = None,
    sequence_length: int | None = None,
) -> DataPath:
    """Uniform experience replay as a data path: every rollout's `[T, B]` transitions go into
    a ring buffer, each observation stored once (`replay.storage`); each gradient step
    samples `batch_size` of them uniformly, as a `Sample` with unit weights. The capacity is
    rounded up to a whole number of rollouts.

    Args:
      capacity: the most transitions held; the oldest are overwritten first.
      batch_size: transitions (or windows) per `sample`.
      min_size: `can_sample` once this many were added (default `batch_size`).
      final_capacity: final observations of time-limit truncations kept (default: a
        sixteenth of the capacity; see `replay.storage`).
      sequence_length: None to sample single transitions, `L` for windows of `L` steps.
    """
    capacity, batch_size, min_size = check_sizes(capacity, batch_size, min_size)
    gather = store_gather if sequence_length is None else store_gather_sequence

    def init(example: Any) -> BufferState:
        storage = store_init(example, capacity, min_size, final_capacity, sequence_length or 1)
        return BufferState(storage, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def add(state: BufferState, trajectory: Any) -> BufferState:
        storage, num = store_write(state.storage, trajectory, state.index)
        slots = capacity_of(storage)
        return BufferState(
            storage, (state.index + num) % slots, jnp.minimum(state.size + num, slots)
        )

    def sample(state: BufferState, key: jax.Array) -> Sample:
        # Uniform over the slots whose next observation has arrived: all but the newest row.
        capacity, lag = capacity_of(state.storage), unready(state.storage)
        ready = jnp.maximum(state.size - lag, 1)
        oldest = (state.index - state.size) % capacity
        # One draw of random bits, reduced modulo `ready`: `randint` draws twice (and splits
        # its key) to remove the modulo's bias, a relative `ready / 2**32` (2e-4 at a
        # million slots), and every draw costs a generator pass per step.
        offset = jax.random.bits(key, (batch_size,), jnp.uint32) % ready.astype(jnp.uint32)
        idx = (oldest + offset.astype(jnp.int32)) % capacity
        items, valid = gather(state.storage, idx)
        return Sample(items, idx, valid.astype(jnp.float32))

    return DataPath(
        init=init,
        add=add,
        sample=sample,
        can_sample=lambda state: ready_to_sample(state.storage, state.size, min_size),
        update=keep,
    )
