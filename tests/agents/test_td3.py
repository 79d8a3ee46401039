import chex
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from purerl.agents import continuous, td3
from purerl.core import EnvSpec

from tests.helpers import PENDULUM_SPEC
from tests.helpers import pendulum_batch as batch

SMALL = dict(hidden_sizes=(32, 32), batch_size=16, buffer_size=64, learning_starts=16)


def changed(a, b):
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return any(not np.array_equal(x, y) for x, y in pairs)


def test_critics_regress_to_the_target_by_hand():
    q_tm1 = jnp.array([[1.0, 2.0], [0.0, 2.0]])  # [2 critics, 2 samples]
    loss, td = continuous.critics_loss(
        q_tm1, jnp.array([1.0, 0.0]), jnp.array([0.5, 0.0]), v_t=jnp.array([2.0, 7.0])
    )
    # targets: 1 + 0.5 * 2 = 2 and 0 + 0 * 7 = 0.
    np.testing.assert_allclose(td, [[1.0, -2.0], [2.0, -2.0]])
    np.testing.assert_allclose(loss, (0.5 + 2.0) / 2 + (2.0 + 2.0) / 2)


def test_target_policy_smoothing_is_clipped_noise_within_the_bounds():
    action = jnp.array([[0.0], [0.95], [-1.0]]).repeat(1000, axis=0)
    key = jax.random.PRNGKey(0)
    smoothed = td3.smoothed_target_action(action, key, noise=0.2, noise_clip=0.5)
    noise = jnp.clip(0.2 * jax.random.normal(key, action.shape), -0.5, 0.5)
    np.testing.assert_allclose(smoothed, jnp.clip(action + noise, -1.0, 1.0))
    assert float(jnp.max(jnp.abs(smoothed - action))) <= 0.5 + 1e-6
    assert float(jnp.max(jnp.abs(smoothed))) <= 1.0 and float(jnp.std(smoothed[::3])) > 0.15
    assert td3.smoothed_target_action(action, key, noise=0.0, noise_clip=0.5) is action


def test_policy_and_targets_step_every_policy_delay_critic_steps_by_polyak():
    config = td3.TD3Config(**SMALL, policy_delay=2, tau=0.1)
    agent = td3.make(config)
    state = agent.init(jax.random.PRNGKey(0), PENDULUM_SPEC)
    learn = jax.jit(chex.assert_max_traces(agent.learn, n=1))
    for step in range(1, 5):
        new, metrics = learn(state, batch(jax.random.PRNGKey(step)), jax.random.PRNGKey(9))
        assert int(new.steps) == step and changed(state.critic_params, new.critic_params)
        due = step % 2 == 0
        assert changed(state.actor_params, new.actor_params) == due
        assert changed(state.target_actor_params, new.target_actor_params) == due
        assert changed(state.target_critic_params, new.target_critic_params) == due
        if due:  # target <- tau * online + (1 - tau) * target, for the actor and the critics.
            for online, old, target in (
                (new.actor_params, state.target_actor_params, new.target_actor_params),
                (new.critic_params, state.target_critic_params, new.target_critic_params),
            ):
                hand = jax.tree.map(lambda o, t: 0.1 * o + 0.9 * t, online, old)
                chex.assert_trees_all_close(target, hand, rtol=1e-6, atol=1e-7)
        assert np.isfinite(float(metrics["actor_loss"])) and metrics["priorities"].shape == (16,)
        state = new


def test_polyak_step_by_hand():
    new = optax.incremental_update({"w": jnp.array(3.0)}, {"w": jnp.array(1.0)}, 0.25)
    assert float(new["w"]) == pytest.approx(0.25 * 3.0 + 0.75 * 1.0)


def test_ddpg_is_one_critic_without_smoothing_or_delay():
    config = td3.DDPGConfig(**SMALL)
    assert (config.num_critics, config.policy_delay, config.target_noise) == (1, 1, 0.0)
    agent = td3.make(config)
    state = agent.init(jax.random.PRNGKey(0), PENDULUM_SPEC)
    q = state.critic.apply(state.critic_params, jnp.zeros((5, 3)), jnp.zeros((5, 1)))
    chex.assert_shape(q, (1, 5))
    new, _ = agent.learn(state, batch(jax.random.PRNGKey(1)), jax.random.PRNGKey(2))
    assert changed(state.actor_params, new.actor_params)


def test_exploration_noise_and_the_deterministic_action():
    agent = td3.make(td3.TD3Config(**SMALL, exploration_noise=0.3))
    state = agent.init(jax.random.PRNGKey(0), PENDULUM_SPEC)
    obs = jnp.zeros((2000, 3))
    mean, _, _ = agent.act(state, (), obs, jax.random.PRNGKey(1), deterministic=True)
    noisy, _, _ = agent.act(state, (), obs, jax.random.PRNGKey(1))
    np.testing.assert_allclose(mean, 2.0 * state.actor.apply(state.actor_params, obs), atol=1e-6)
    assert np.all(np.abs(noisy) <= 2.0)
    # Noise of std 0.3 in [-1, 1] units is 0.6 in Pendulum's [-2, 2] (before clipping).
    assert 0.5 < float(jnp.std(noisy - mean)) < 0.65


def test_bad_settings_and_discrete_actions_are_refused():
    with pytest.raises(ValueError, match="policy_delay"):
        td3.TD3Config(policy_delay=0)
    with pytest.raises(ValueError, match="exploration_noise"):
        td3.TD3Config(exploration_noise=-0.1)
    agent = td3.make(td3.DDPGConfig(**SMALL))
    with pytest.raises(ValueError, match="DDPG needs a continuous action space"):
        agent.init(
            jax.random.PRNGKey(0),
            EnvSpec(PENDULUM_SPEC.observation_space, gymnasium.spaces.Discrete(2)),
        )
