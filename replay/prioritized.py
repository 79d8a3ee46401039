"""Prioritised experience replay (Schaul et al., 2016) over a jittable sum-tree.

Item `i` is sampled with probability `p_i^alpha / sum_j p_j^alpha`, where `p_i` is
`|priority| + eps` as `learn` last reported it (new items get the largest priority seen so
far), and carries the importance weight `(size * P(i))^-beta`, divided by the batch's largest,
with `beta` annealed linearly to 1.

The sum-tree is one float32 array `[2 * L]` (`L`, the capacity rounded up to a power of two):
leaves at `L + i`, node `n`'s children at `2n` and `2n + 1`, the total at node 1. Every write
recomputes each touched parent as the float32 sum of its two children, never by adding
deltas, so the tree holds no drift however long it runs; and the descent never enters a
subtree whose sum is 0, so an item of priority 0 (or an empty slot) is never sampled.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from purerl.core import PRIORITIES
from purerl.replay.base import DataPath, Sample, flatten_time
from purerl.replay.uniform import Item


@struct.dataclass
class PrioritizedState:
    storage: Item  # Leaves [capacity, ...]: preallocated transitions.
    tree: jax.Array  # [2 * L] float32 sum-tree of p^alpha (leaves at L + i, total at 1).
    index: jax.Array  # [] int32, the next slot to write.
    size: jax.Array  # [] int32, how many slots hold data.
    max_priority: jax.Array  # [] float32, the largest p seen (new items get it).
    samples: jax.Array  # [] int32, sample calls so far (anneals beta).


def tree_depth(capacity: int) -> int:
    """Levels below the root: the capacity rounded up to a power of two is `2**depth`."""
    return max(1, (int(capacity) - 1).bit_length())


def tree_set(tree: jax.Array, indices: jax.Array, values: jax.Array, depth: int) -> jax.Array:
    """Sets leaves `indices` to `values` and recomputes every ancestor from its children."""
    leaves = 1 << depth
    node = leaves + indices
    tree = tree.at[node].set(values.astype(tree.dtype))
    for _ in range(depth):
        node = node >> 1
        tree = tree.at[node].set(tree[2 * node] + tree[2 * node + 1])
    return tree


def tree_find(tree: jax.Array, values: jax.Array, depth: int) -> jax.Array:
    """For each value in `[0, total)`, the leaf whose cumulative-sum interval holds it; a
    subtree of sum 0 is never entered (float32 rounding at an edge goes to its sibling)."""
    node = jnp.ones(values.shape, jnp.int32)
    for _ in range(depth):
        left = tree[2 * node]
        right = tree[2 * node + 1]
        go_right = jnp.where(left <= 0, True, jnp.where(right <= 0, False, values >= left))
        values = jnp.where(go_right, values - left, values)
        node = 2 * node + go_right.astype(jnp.int32)
    return node - (1 << depth)


def prioritized_replay(
    capacity: int,
    batch_size: int,
    min_size: int | None = None,
    alpha: float = 0.6,
    beta_start: float = 0.4,
    beta_steps: int = 100_000,
    eps: float = 1e-6,
) -> DataPath:
    """Prioritised replay as a data path.

    Args:
      capacity: the most transitions held; the oldest are overwritten first.
      batch_size: transitions per `sample`.
      min_size: `can_sample` once this many were added (default `batch_size`).
      alpha: priority exponent (0: uniform).
      beta_start: importance-weight exponent at the first sample, annealed linearly to 1.
      beta_steps: samples over which beta reaches 1.
      eps: added to `|priority|`, so no item that was learned from is starved.

    `update` reads the `[N]` array `learn` returns under `purerl.core.PRIORITIES`
    (`|TD error|`, for instance).
    """
    capacity, batch_size = int(capacity), int(batch_size)
    min_size = batch_size if min_size is None else int(min_size)
    if capacity < 1 or batch_size < 1:
        raise ValueError(
            f"Prioritised replay needs a positive capacity and batch size; got {capacity}, "
            f"{batch_size}."
        )
    if not batch_size <= min_size <= capacity:
        raise ValueError(
            f"Replay min_size ({min_size}) must lie between batch_size ({batch_size}) and "
            f"capacity ({capacity}); raise the buffer size or lower the batch size."
        )
    if alpha < 0 or not 0 <= beta_start <= 1 or beta_steps < 1 or eps < 0:
        raise ValueError(
            "Prioritised replay needs alpha >= 0, 0 <= beta_start <= 1, beta_steps >= 1 and "
            f"eps >= 0; got alpha={alpha}, beta_start={beta_start}, beta_steps={beta_steps}, "
            f"eps={eps}."
        )
    depth = tree_depth(capacity)

    def init(example: Any) -> PrioritizedState:
        item = jax.tree.map(lambda x: x[0, 0], example)
        storage = jax.tree.map(
            lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), item
        )
        tree = jnp.zeros((2 << depth,), jnp.float32)

        def zero() -> jax.Array:  # A buffer of its own each (donated states must not alias).
            return jnp.zeros((), jnp.int32)

        return PrioritizedState(storage, tree, zero(), zero(), jnp.ones((), jnp.float32), zero())

    def add(state: PrioritizedState, trajectory: Any) -> PrioritizedState:
        items = flatten_time(trajectory)
        num = jax.tree.leaves(items)[0].shape[0]
        if num > capacity:
            raise ValueError(f"add: {num} items do not fit a buffer of capacity {capacity}.")
        slots = (state.index + jnp.arange(num)) % capacity
        storage = jax.tree.map(lambda s, x: s.at[slots].set(x), state.storage, items)
        top = jnp.full((num,), state.max_priority**alpha, jnp.float32)
        return state.replace(
            storage=storage,
            tree=tree_set(state.tree, slots, top, depth),
            index=(state.index + num) % capacity,
            size=jnp.minimum(state.size + num, capacity),
        )

    def sample(state: PrioritizedState, key: jax.Array) -> Sample:
        total = state.tree[1]
        # Stratified: one value in each of `batch_size` equal slices of the total mass.
        u = (jnp.arange(batch_size) + jax.random.uniform(key, (batch_size,))) / batch_size
        values = jnp.minimum(u * total, jnp.nextafter(total, 0.0))
        idx = tree_find(state.tree, values, depth)
        prob = state.tree[(1 << depth) + idx] / total
        beta = beta_start + (1.0 - beta_start) * jnp.minimum(1.0, state.samples / beta_steps)
        weights = (state.size.astype(jnp.float32) * prob) ** (-beta)
        weights = weights / jnp.max(weights)
        items = jax.tree.map(lambda s: s[idx], state.storage)
        return Sample(items, idx, weights.astype(jnp.float32))

    def update(state: PrioritizedState, batch: Sample, metrics: dict[str, jax.Array]) -> Any:
        if PRIORITIES not in metrics:
            raise ValueError(
                "Prioritised replay needs the agent's learn to return per-sample priorities "
                f"under metrics[{PRIORITIES!r}] (|TD error|, for instance)."
            )
        p = jnp.abs(metrics[PRIORITIES]).astype(jnp.float32) + eps
        return state.replace(
            tree=tree_set(state.tree, batch.indices, p**alpha, depth),
            max_priority=jnp.maximum(state.max_priority, jnp.max(p)),
            samples=state.samples + 1,
        )

    return DataPath(
        init=init,
        add=add,
        sample=sample,
        can_sample=lambda state: state.size >= min_size,
        update=update,
    )
