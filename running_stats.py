"""Running statistics: a count, a mean and a variance per feature, merged exactly (Chan et
al.'s parallel update) over batches and devices.

Observation normalisation (`purerl.agents.normalize`) and reward scaling
(`purerl.envs.wrappers.ScaleReward`, `HostRewardScale`) both keep them, so they live below
both packages.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningStats:
    count: jax.Array  # [] float32, samples seen.
    mean: jax.Array  # [*shape] float32.
    var: jax.Array  # [*shape] float32, the population variance.


def stats_init(shape: tuple[int, ...]) -> RunningStats:
    """No samples yet: mean 0 and variance 1, so the first batch passes unchanged."""
    return RunningStats(
        jnp.zeros((), jnp.float32), jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32)
    )


def merge_moments(count: Any, mean: Any, var: Any, n: Any, batch_mean: Any, batch_var: Any) -> Any:
    """`(count, mean, var)` of two sets of samples merged exactly (Chan et al.'s parallel
    update), from each one's count, mean and population variance. Plain arithmetic, so it
    serves NumPy (the host loop's reward scaling) and JAX alike."""
    total = count + n
    delta = batch_mean - mean
    new_mean = mean + delta * n / total
    m2 = var * count + batch_var * n + delta * delta * count * n / total
    return total, new_mean, m2 / total


def stats_update(stats: RunningStats, x: jax.Array, axis_name: str | None = None) -> RunningStats:
    """`stats` merged with the samples `x[..., *shape]` (all leading axes are samples), and
    with every device's `x` over `axis_name`."""
    x = x.reshape((-1,) + stats.mean.shape).astype(jnp.float32)
    total = lambda v: v if axis_name is None else jax.lax.psum(v, axis_name)  # noqa: E731
    n = total(jnp.asarray(x.shape[0], jnp.float32))
    mean = total(jnp.sum(x, axis=0)) / n
    var = total(jnp.sum(jnp.square(x - mean), axis=0)) / n
    return RunningStats(*merge_moments(stats.count, stats.mean, stats.var, n, mean, var))


def normalized(stats: RunningStats, x: jax.Array, clip: float, eps: float = 1e-8) -> jax.Array:
    """`clip((x - mean) / sqrt(var + eps), -clip, clip)`."""
    z = (jnp.asarray(x, jnp.float32) - stats.mean) / jnp.sqrt(stats.var + eps)
    return jnp.clip(z, -clip, clip)
