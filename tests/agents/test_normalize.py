import chex
import gymnasium
import jax
import jax.numpy as jnp
import pytest
from purerl.agents import normalize, ppo, registry
from purerl.agents.registry import Context
from purerl.core import EnvSpec

from tests.helpers import CARTPOLE_SPEC, transitions


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
