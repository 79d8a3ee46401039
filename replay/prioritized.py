"""Prioritised experience replay (Schaul et al., 2016) over a jittable sum-tree.

Item `i` is sampled with probability `p_i^alpha / sum_j p_j^alpha`, where `p_i` is
`|priority| + eps` as `learn` last reported it (new items get the largest priority seen so
far), and carries the importance weight `(size * P(i))^-beta`, divided by the batch's largest,
with `beta` annealed linearly to 1.

The sum-tree is wide: each node has `BRANCH` (16) children, so a million items need five
levels, and sampling or updating a batch is a handful of vectorised ops per level rather
than one per binary level (on a CPU, each op costs microseconds whatever its size). Levels
are float32 arrays, top first, each only as long as the level below needs; the leaves hold
`p^alpha`. Every write recomputes each
touched parent as the float32 sum of its children, never by adding deltas, so the tree
holds no drift however long it runs; and the descent never enters a child whose sum is 0,
so an item of priority 0 (or an empty slot) is never sampled.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from purerl.core import PRIORITIES
from purerl.replay.base import DataPath, Sample
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

BRANCH = 16  # Children per node: five levels hold a million items.


@struct.dataclass
class PrioritizedState:
    storage: Any  # Leaves [capacity, ...]: preallocated transitions (whole rollouts).
    tree: tuple[jax.Array, ...]  # Levels float32 (`tree_sizes`), top first; leaves last.
    index: jax.Array  # [] int32, the next slot to write.
    size: jax.Array  # [] int32, how many slots hold data.
    max_priority: jax.Array  # [] float32, the largest p seen (new items get it).
    samples: jax.Array  # [] int32, sample calls so far (anneals beta).


def tree_sizes(capacity: int) -> list[int]:
    """Each level's length, top first: the leaves are `capacity` rounded up to a multiple of
    `BRANCH`, each level above holds one sum per `BRANCH` entries below (rounded up the same
    way), and the top level has `BRANCH` entries. Levels are no longer than they must be: a
    leaf level of `BRANCH ** depth` would be ten times the buffer at 1e5 items, and XLA
    copies a level whole where it cannot update it in place."""
    sizes = [BRANCH * -(-max(1, int(capacity)) // BRANCH)]
    while sizes[0] > BRANCH:
        sizes.insert(0, BRANCH * -(-sizes[0] // BRANCH**2))
    return sizes


def tree_depth(capacity: int) -> int:
    """Levels below the root: the smallest `depth` with `BRANCH ** depth >= capacity`."""
    return len(tree_sizes(capacity))


def tree_init(capacity: int) -> tuple[jax.Array, ...]:
    return tuple(jnp.zeros((size,), jnp.float32) for size in tree_sizes(capacity))


def _legacy_size(level: int) -> int:
    """Level `level`'s (0 = top) length as purerl laid sum-trees out before `tree_sizes`:
    `BRANCH ** (level + 1)`, a leaf level of a million slots for any buffer over 65,536."""
    return BRANCH ** (level + 1)


def legacy_target(runner: Any) -> Any | None:
    """`runner` with every sum-tree level shaped as checkpoints written before `tree_sizes`
    hold it (abstract arrays, with the same shardings), or None where it has no sum-tree."""
    found = False

    def old(state: Any) -> Any:
        nonlocal found
        if not isinstance(state, PrioritizedState):
            return state
        found = True
        tree = tuple(
            jax.ShapeDtypeStruct(
                level.shape[:-1] + (_legacy_size(k),), level.dtype, sharding=level.sharding
            )
            for k, level in enumerate(state.tree)
        )
        return state.replace(tree=tree)

    target = jax.tree.map(old, runner, is_leaf=lambda x: isinstance(x, PrioritizedState))
    return target if found else None


def from_legacy(restored: Any, runner: Any) -> Any:
    """A runner restored into `legacy_target(runner)`, its sum-tree levels cut to today's
    lengths. Nodes are numbered alike in both layouts (node `i`'s children are `BRANCH * i`
    on), and the old levels hold only zeros past today's lengths, so this is exact."""

    def cut(old: Any, new: Any) -> Any:
        if not isinstance(new, PrioritizedState):
            return old
        tree = tuple(
            jax.device_put(level[..., : ref.shape[-1]], ref.sharding)
            for level, ref in zip(old.tree, new.tree, strict=True)
        )
        return old.replace(tree=tree)

    return jax.tree.map(cut, restored, runner, is_leaf=lambda x: isinstance(x, PrioritizedState))


def tree_total(tree: tuple[jax.Array, ...]) -> jax.Array:
    return jnp.sum(tree[0])


def _rows(level: jax.Array, nodes: jax.Array) -> jax.Array:
    """The children `[N, BRANCH]` of `nodes` (all in range by construction)."""
    return level.reshape(-1, BRANCH).at[nodes].get(mode="promise_in_bounds")


def tree_set(
    tree: tuple[jax.Array, ...], indices: jax.Array, values: jax.Array
) -> tuple[jax.Array, ...]:
    """Sets leaves `indices` to `values` and recomputes every ancestor from its children."""
    levels = list(tree)
    levels[-1] = levels[-1].at[indices].set(values.astype(jnp.float32))
    for k in range(len(levels) - 1, 0, -1):
        indices = indices // BRANCH
        children = _rows(levels[k], indices)
        levels[k - 1] = levels[k - 1].at[indices].set(jnp.sum(children, axis=-1))
    return tuple(levels)


def tree_find(tree: tuple[jax.Array, ...], values: jax.Array) -> jax.Array:
    """For each value in `[0, total)`, the leaf whose cumulative-sum interval holds it.

    At each node the value is first clamped below the node's cumulative total, so the
    chosen child is the first whose cumulative sum exceeds it: a child of sum 0 never
    exceeds its predecessor, so it is never entered, whatever float32 rounding does.
    """
    # Cumulative sums as a product with an upper-triangular matrix of ones: on a CPU, XLA's
    # cumsum (a reduce-window) took 20 us for [256, 16] where this takes about 1.
    upper = jnp.triu(jnp.ones((BRANCH, BRANCH), jnp.float32))
    node = jnp.zeros(values.shape, jnp.int32)
    for level in tree:
        children = _rows(level, node)  # [N, BRANCH]
        cumulative = jnp.dot(children, upper, precision=jax.lax.Precision.HIGHEST)
        values = jnp.minimum(values, jnp.nextafter(cumulative[:, -1], 0.0))
        below = cumulative <= values[:, None]
        j = jnp.sum(below, axis=-1, dtype=jnp.int32)
        values = values - jnp.max(jnp.where(below, cumulative, 0.0), axis=-1)
        node = node * BRANCH + j
    return node


def prioritized_replay(
    capacity: int,
    batch_size: int,
    min_size: int | None = None,
    alpha: float = 0.6,
    beta_start: float = 0.4,
    beta_steps: int = 100_000,
    eps: float = 1e-6,
    final_capacity: int | None = None,
    sequence_length: int | None = None,
) -> DataPath:
    """Prioritised replay as a data path (each observation stored once, `replay.storage`).

    Args:
      capacity: the most transitions held; the oldest are overwritten first.
      batch_size: transitions per `sample`.
      min_size: `can_sample` once this many were added (default `batch_size`).
      alpha: priority exponent (0: uniform).
      beta_start: importance-weight exponent at the first sample, annealed linearly to 1.
      beta_steps: samples over which beta reaches 1.
      eps: added to `|priority|`, so no item that was learned from is starved.
      final_capacity: final observations of time-limit truncations kept (default: a
        sixteenth of the capacity).

    `update` reads the `[N]` array `learn` returns under `purerl.core.PRIORITIES`
    (`|TD error|`, for instance).
    """
    capacity, batch_size, min_size = check_sizes(capacity, batch_size, min_size)
    if alpha < 0 or not 0 <= beta_start <= 1 or beta_steps < 1 or eps < 0:
        raise ValueError(
            "Prioritised replay needs alpha >= 0, 0 <= beta_start <= 1, beta_steps >= 1 and "
            f"eps >= 0; got alpha={alpha}, beta_start={beta_start}, beta_steps={beta_steps}, "
            f"eps={eps}."
        )
    gather = store_gather if sequence_length is None else store_gather_sequence

    def init(example: Any) -> PrioritizedState:
        storage = store_init(example, capacity, min_size, final_capacity, sequence_length or 1)
        tree = tree_init(capacity_of(storage))

        def zero() -> jax.Array:  # A buffer of its own each (donated states must not alias).
            return jnp.zeros((), jnp.int32)

        return PrioritizedState(storage, tree, zero(), zero(), jnp.ones((), jnp.float32), zero())

    def add(state: PrioritizedState, trajectory: Any) -> PrioritizedState:
        storage, num = store_write(state.storage, trajectory, state.index)
        slots, lag = capacity_of(storage), unready(storage)
        # The new items get the largest priority, but the newest `lag` slots 0 until their
        # next observation (or the rest of their window) arrives; the `num` slots before
        # those become sampleable now, where they hold data.
        position = jnp.arange(num + lag)
        new = (state.index - lag + position) % slots
        written = position >= lag - state.size
        top = jnp.where(written & (position < num), state.max_priority**alpha, 0.0)
        return state.replace(
            storage=storage,
            tree=tree_set(state.tree, new, top),
            index=(state.index + num) % slots,
            size=jnp.minimum(state.size + num, slots),
        )

    def sample(state: PrioritizedState, key: jax.Array) -> Sample:
        total = tree_total(state.tree)
        # Stratified: one value in each of `batch_size` equal slices of the total mass.
        u = (jnp.arange(batch_size) + jax.random.uniform(key, (batch_size,))) / batch_size
        values = jnp.minimum(u * total, jnp.nextafter(total, 0.0))
        idx = tree_find(state.tree, values)
        prob = state.tree[-1].at[idx].get(mode="promise_in_bounds") / total
        beta = beta_start + (1.0 - beta_start) * jnp.minimum(1.0, state.samples / beta_steps)
        ready = (state.size - unready(state.storage)).astype(jnp.float32)
        weights = (ready * prob) ** (-beta)
        weights = weights / jnp.max(weights)
        items, valid = gather(state.storage, idx)
        return Sample(items, idx, jnp.where(valid, weights, 0.0).astype(jnp.float32))

    def update(state: PrioritizedState, batch: Sample, metrics: dict[str, jax.Array]) -> Any:
        if PRIORITIES not in metrics:
            raise ValueError(
                "Prioritised replay needs the agent's learn to return per-sample priorities "
                f"under metrics[{PRIORITIES!r}] (|TD error|, for instance)."
            )
        p = jnp.abs(metrics[PRIORITIES]).astype(jnp.float32) + eps
        return state.replace(
            tree=tree_set(state.tree, batch.indices, p**alpha),
            max_priority=jnp.maximum(state.max_priority, jnp.max(p)),
            samples=state.samples + 1,
        )

    return DataPath(
        init=init,
        add=add,
        sample=sample,
        can_sample=lambda state: ready_to_sample(state.storage, state.size, min_size),
        update=update,
    )
