"""Observation normalisation for any agent, as a transformation of the agent itself
(`normalize_observations(agent) -> agent`), so it works the same on both loops and for
every agent, and its statistics live in the agent state: checkpoints resume them exactly,
and `load_policy`, `enjoy` and evaluation normalise as training did, with nothing to carry
beside the policy.

`act` feeds the agent `clip((obs - mean) / sqrt(var + eps), +-clip)` under the running
statistics in the state. `learn` normalises the batch with the same statistics its rollout
was acted with (so an on-policy agent's stored log-probabilities still match its policy),
learns, and only then folds the batch's raw observations into the statistics: a count, a
mean and a variance per observation feature, merged exactly (Chan et al.'s parallel
update) over the batch and, when made with an `axis_name`, over every device's shard. A
replay agent updates them from its sampled batches, so they follow what it replays.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
from flax import struct
from purerl.core import Agent, EnvSpec, Transition
from purerl.replay.base import Sample


@struct.dataclass
class RunningStats:
    count: jax.Array  # [] float32, observations seen.
    mean: jax.Array  # [*obs_shape] float32.
    var: jax.Array  # [*obs_shape] float32, the population variance.


def stats_init(shape: tuple[int, ...]) -> RunningStats:
    """No observations yet: mean 0 and variance 1, so the first rollout passes unchanged."""
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
    """`stats` merged with the observations `x[..., *obs_shape]` (all leading axes are
    samples), and with every device's `x` over `axis_name`."""
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


@struct.dataclass
class NormalizedState:
    agent_state: Any  # The wrapped agent's state.
    obs_stats: RunningStats


def normalize_observations(agent: Agent, axis_name: str | None = None, clip: float = 10.0) -> Agent:
    """`agent` acting and learning on normalised observations (see the module doc).

    Args:
      agent: any agent whose observations are arrays (a `Box` observation space).
      axis_name: the named device axis its learner runs over (statistics merge over it).
      clip: normalised observations are clipped to `[-clip, clip]`.
    """

    def init(key: jax.Array, spec: EnvSpec) -> NormalizedState:
        space = spec.observation_space
        if not isinstance(space, gymnasium.spaces.Box):
            raise ValueError(
                f"--normalize-observations needs array observations (a Box space); got {space}."
            )
        return NormalizedState(agent.init(key, spec), stats_init(tuple(space.shape)))

    def act(
        state: NormalizedState, carry: Any, obs: Any, key: jax.Array, deterministic: bool = False
    ) -> Any:
        obs = normalized(state.obs_stats, obs, clip)
        return agent.act(state.agent_state, carry, obs, key, deterministic)

    def learn(state: NormalizedState, batch: Any, key: jax.Array) -> tuple[NormalizedState, Any]:
        items = batch.items if isinstance(batch, Sample) else batch
        if not isinstance(items, Transition):
            raise ValueError(
                "--normalize-observations needs batches of Transitions; got "
                f"{type(items).__name__}."
            )
        scaled = items._replace(
            obs=normalized(state.obs_stats, items.obs, clip),
            next_obs=normalized(state.obs_stats, items.next_obs, clip),
        )
        batch = batch._replace(items=scaled) if isinstance(batch, Sample) else scaled
        agent_state, metrics = agent.learn(state.agent_state, batch, key)
        stats = stats_update(state.obs_stats, items.obs, axis_name)
        return NormalizedState(agent_state, stats), metrics

    return Agent(init, act, learn, agent.initial_carry)
