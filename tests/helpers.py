"""Shared test helpers: specs, fake batches and the data-parallel harness."""

import functools

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from purerl.core import EnvSpec, Transition
from purerl.replay import Sample

AXIS = "device"
CARTPOLE_SPEC = EnvSpec(
    gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float32), gymnasium.spaces.Discrete(2)
)


def transitions(key, shape, extras=None):
    """Random CartPole-like transitions with leading axes `shape`."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return Transition(
        obs=jax.random.normal(k1, shape + (4,)),
        action=jax.random.randint(k2, shape, 0, 2),
        reward=jnp.ones(shape, jnp.float32),
        terminated=jax.random.uniform(k3, shape) < 0.1,
        truncated=jnp.zeros(shape, bool),
        next_obs=jax.random.normal(k4, shape + (4,)),
        extras=extras or {},
    )


def replay_sample(items):
    """`items` `[N]` as a uniform replay sample (unit weights)."""
    n = items.reward.shape[0]
    return Sample(items, jnp.arange(n, dtype=jnp.int32), jnp.ones((n,), jnp.float32))


PENDULUM_SPEC = EnvSpec(
    gymnasium.spaces.Box(-8.0, 8.0, (3,), np.float32),
    gymnasium.spaces.Box(-2.0, 2.0, (1,), np.float32),
)


def pendulum_batch(key, n=16):
    """A replay sample of `n` random Pendulum-like transitions (actions in [-2, 2])."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return replay_sample(
        Transition(
            obs=jax.random.normal(k1, (n, 3)),
            action=jax.random.uniform(k2, (n, 1), minval=-2.0, maxval=2.0),
            reward=jax.random.normal(k3, (n,)),
            terminated=jnp.zeros((n,), bool),
            truncated=jnp.zeros((n,), bool),
            next_obs=jax.random.normal(k4, (n, 3)),
            extras={},
        )
    )


def data_parallel(learn, num_devices, batch_axis):
    """`learn` under `shard_map` over `num_devices` CPU devices, the batch split on `batch_axis`."""
    mesh = Mesh(np.asarray(jax.devices()[:num_devices]), (AXIS,))
    spec = P(*([None] * batch_axis + [AXIS]))

    @jax.jit
    @functools.partial(
        jax.shard_map, mesh=mesh, in_specs=(P(), spec, P()), out_specs=P(), check_vma=False
    )
    def step(state, batch, key):
        return learn(state, batch, key)

    def run(state, batch, key):
        batch = jax.device_put(batch, NamedSharding(mesh, spec))
        state, key = jax.device_put((state, key), NamedSharding(mesh, P()))
        return jax.block_until_ready(step(state, batch, key))

    return run


def assert_k_of_n(returns, k, threshold, what):
    """At least `k` of the seeds' final `returns` reach `threshold`: the criterion of a
    learning test, as one seed's curve depends on the CPU's float rounding. The message (and
    the line printed, seen with `pytest -s`) lists every seed's return."""
    returns = np.asarray(returns, np.float64).ravel()
    assert 1 <= k <= returns.size, f"{what}: asked for {k} of {returns.size} seeds"
    listed = ", ".join(f"{r:.1f}" for r in returns)
    reached = int(np.sum(returns >= threshold))
    print(f"{what}: {reached} of {returns.size} seeds at {threshold} or more ({listed})")
    assert reached >= k, (
        f"{what}: {reached} of {returns.size} seeds reached {threshold}, needed {k}; "
        f"per seed: {listed}"
    )
