import chex
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from purerl.agents import normalize, ppo, registry
from purerl.agents.registry import Context
from purerl.core import EnvSpec

from tests.helpers import AXIS, CARTPOLE_SPEC, data_parallel, transitions


def test_running_statistics_equal_those_of_all_the_data():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(3.0, 2.0, (n, 2, 3)).astype(np.float32) for n in (5, 17, 1, 40)]
    stats = normalize.stats_init((3,))
    for chunk in chunks:
        stats = normalize.stats_update(stats, jnp.asarray(chunk))
    every = np.concatenate(chunks).reshape(-1, 3)
    assert float(stats.count) == every.shape[0]
    np.testing.assert_allclose(stats.mean, every.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.var, every.var(0), rtol=1e-4)
    z = normalize.normalized(stats, jnp.asarray(every), clip=10.0)
    np.testing.assert_allclose(np.mean(z, 0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.std(z, 0), 1.0, rtol=1e-3)
    assert float(jnp.max(normalize.normalized(stats, jnp.full((1, 3), 1e6), clip=5.0))) == 5.0


def test_statistics_merge_across_devices_like_one_batch():
    rng = np.random.default_rng(1)
    old = normalize.stats_update(normalize.stats_init((2,)), jnp.asarray(rng.normal(size=(8, 2))))
    batch = jnp.asarray(rng.normal(5.0, 3.0, (16, 2)), jnp.float32)

    def merge(stats, x, key):
        return normalize.stats_update(stats, x, AXIS), key

    four, _ = data_parallel(merge, 4, batch_axis=0)(old, batch, jax.random.PRNGKey(0))
    one = normalize.stats_update(old, batch)
    chex.assert_trees_all_close(jax.device_get(four), one, rtol=1e-5)
    assert float(four.count) == 24.0


def test_the_wrapped_agent_acts_and_learns_on_normalised_observations():
    config = ppo.PPOConfig(lr_schedule="constant", hidden_sizes=(8,), num_envs=4, num_steps=8)
    inner = ppo.make(config)
    agent = normalize.normalize_observations(inner)
    state = agent.init(jax.random.PRNGKey(0), CARTPOLE_SPEC)
    stats = normalize.stats_update(state.obs_stats, 4.0 + jnp.arange(12.0).reshape(3, 4))
    state = state.replace(obs_stats=stats)
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
    key = jax.random.PRNGKey(2)
    action, _, extras = agent.act(state, (), obs, key)
    expected = inner.act(state.agent_state, (), normalize.normalized(stats, obs, 10.0), key)
    chex.assert_trees_all_close((action, extras), (expected[0], expected[2]))

    # learn normalises with the statistics the rollout was acted with, then updates them.
    rollout = jax.vmap(lambda o, k: agent.act(state, (), o, k), in_axes=(0, 0))
    obs = 10.0 + jax.random.normal(jax.random.PRNGKey(3), (8, 4, 4))
    actions, _, extras = rollout(obs, jax.random.split(key, 8))
    batch = transitions(jax.random.PRNGKey(4), (8, 4))._replace(
        obs=obs, next_obs=obs, action=actions, extras=extras
    )
    new, metrics = jax.jit(agent.learn)(state, batch, key)
    _, same = inner.learn(
        state.agent_state,
        batch._replace(
            obs=normalize.normalized(stats, obs, 10.0),
            next_obs=normalize.normalized(stats, obs, 10.0),
        ),
        key,
    )
    chex.assert_trees_all_close(metrics, same)
    assert float(new.obs_stats.count) == 3 + 32
    chex.assert_trees_all_close(new.obs_stats, normalize.stats_update(stats, obs))


def test_the_option_wraps_every_agent_and_refuses_non_array_observations():
    for name in ("ppo", "dqn"):
        entry = registry.get(name)
        config = entry.config_class()(normalize_observations=True, lr_schedule="constant")
        agent = entry.recipe(config, Context()).agent
        state = agent.init(jax.random.PRNGKey(0), CARTPOLE_SPEC)
        assert isinstance(state, normalize.NormalizedState)
    spec = EnvSpec(gymnasium.spaces.Discrete(3), CARTPOLE_SPEC.action_space)
    with pytest.raises(ValueError, match="needs array observations"):
        normalize.normalize_observations(ppo.make(ppo.PPOConfig(lr_schedule="constant"))).init(
            jax.random.PRNGKey(0), spec
        )
