import chex
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from purerl.agents import dqn
from purerl.core import EnvSpec
from purerl.networks import MLP

from tests.helpers import AXIS, CARTPOLE_SPEC, data_parallel, replay_sample, transitions

Q_TM1 = jnp.array([[1.0, 2.0], [3.0, 4.0]])
A_TM1 = jnp.array([0, 1])
R_T = jnp.array([1.0, 1.0])
DISCOUNT_T = jnp.array([0.99, 0.0])  # The second transition terminated.
Q_T = jnp.array([[10.0, 20.0], [30.0, 40.0]])


def test_dqn_loss_by_hand():
    loss, td = dqn.dqn_loss(Q_TM1, A_TM1, R_T, DISCOUNT_T, Q_T, loss="mse")
    # td_0 = 1 + 0.99 * max(10, 20) - q(s0, a=0) = 1 + 19.8 - 1 = 19.8
    # td_1 = 1 + 0 * ...               - q(s1, a=1) = 1 - 4      = -3
    np.testing.assert_allclose(td, [19.8, -3.0], rtol=1e-6)
    # mse: mean(0.5 * td^2) = (0.5 * 392.04 + 0.5 * 9) / 2 = 100.26
    np.testing.assert_allclose(loss, 100.26, rtol=1e-6)
    huber, _ = dqn.dqn_loss(Q_TM1, A_TM1, R_T, DISCOUNT_T, Q_T, loss="huber", huber_delta=1.0)
    # huber(19.8) = 0.5 + (19.8 - 1) = 19.3; huber(-3) = 0.5 + 2 = 2.5; mean 10.9
    np.testing.assert_allclose(huber, 10.9, rtol=1e-6)


def test_double_q_evaluates_the_online_choice_with_the_target():
    selector = jnp.array([[5.0, 1.0], [0.0, 9.0]])  # Online net prefers action 0 in s'_0.
    _, td = dqn.dqn_loss(Q_TM1, A_TM1, R_T, DISCOUNT_T, Q_T, selector)
    # td_0 = 1 + 0.99 * q_target(s'_0, argmax online = 0) - 1 = 0.99 * 10 = 9.9
    np.testing.assert_allclose(td, [9.9, -3.0], rtol=1e-6)


def test_act_shapes_under_jit_and_vmap():
    agent = dqn.make(dqn.DQNConfig(), num_updates=1000)
    state = agent.init(jax.random.PRNGKey(0), CARTPOLE_SPEC)
    obs = jax.random.normal(jax.random.PRNGKey(1), (7, 4))
    action, carry, _ = jax.jit(agent.act)(state, (), obs, jax.random.PRNGKey(2))
    assert carry == ()
    chex.assert_shape(action, (7,))
    assert action.dtype == jnp.int32
    keys = jax.random.split(jax.random.PRNGKey(3), 7)
    single, _, _ = jax.jit(jax.vmap(agent.act, in_axes=(None, None, 0, 0)))(state, (), obs, keys)
    chex.assert_shape(single, (7,))
    greedy, _, _ = agent.act(state, (), obs, jax.random.PRNGKey(2), deterministic=True)
    q = state.network.apply(state.params, obs)
    np.testing.assert_array_equal(greedy, jnp.argmax(q, -1))


def test_epsilon_decays_with_environment_steps():
    config = dqn.DQNConfig(
        epsilon_decay_steps=1000,
        learning_starts=0,
        num_envs=10,
        train_frequency=1,
        batch_size=8,
        buffer_size=100,
    )
    agent = dqn.make(config, num_updates=1000)
    state = agent.init(jax.random.PRNGKey(0), CARTPOLE_SPEC)
    obs = jax.random.normal(jax.random.PRNGKey(1), (4000, 4))  # No ties between actions.
    greedy = agent.act(state, (), obs, jax.random.PRNGKey(0), deterministic=True)[0]
    explore = agent.act(state, (), obs, jax.random.PRNGKey(0))[0]
    assert 0.4 < float(jnp.mean(explore != greedy)) < 0.6  # epsilon 1: half differ.
    late = state.replace(steps=jnp.asarray(100))  # 100 updates x 10 env steps: decayed.
    explore = agent.act(late, (), obs, jax.random.PRNGKey(0))[0]
    assert float(jnp.mean(explore != greedy)) < 0.05


def test_learn_changes_params_counts_and_updates_target_on_schedule():
    agent = dqn.make(dqn.DQNConfig(target_update_period=2, tau=1.0), num_updates=1000)
    state = agent.init(jax.random.PRNGKey(0), CARTPOLE_SPEC)
    batch = replay_sample(transitions(jax.random.PRNGKey(1), (32,)))
    learn = jax.jit(chex.assert_max_traces(agent.learn, n=1))
    s1, metrics = learn(state, batch, jax.random.PRNGKey(2))
    assert int(s1.steps) == 1
    assert set(metrics) >= {"loss", "q_mean", "td_abs", "grad_norm", "epsilon", "priorities"}
    np.testing.assert_allclose(metrics["priorities"].shape, (32,))
    chex.assert_trees_all_equal(s1.target_params, state.target_params)
    with pytest.raises(AssertionError):
        chex.assert_trees_all_close(s1.params, state.params)
    s2, _ = learn(s1, batch, jax.random.PRNGKey(3))
    assert int(s2.steps) == 2
    chex.assert_trees_all_equal(s2.target_params, s2.params)
    for leaf in jax.tree.leaves(metrics):
        assert np.all(np.isfinite(leaf))


def test_double_q_changes_the_loss_when_networks_differ():
    batch = replay_sample(transitions(jax.random.PRNGKey(1), (64,)))
    losses = []
    for double in (False, True):
        agent = dqn.make(
            dqn.DQNConfig(double_q=double, target_update_period=1000), num_updates=1000
        )
        state = agent.init(jax.random.PRNGKey(0), CARTPOLE_SPEC)
        # An online network unlike the target, so their greedy choices disagree.
        other = agent.init(jax.random.PRNGKey(7), CARTPOLE_SPEC)
        _, metrics = agent.learn(state.replace(params=other.params), batch, jax.random.PRNGKey(0))
        losses.append(float(metrics["loss"]))
    assert losses[0] != pytest.approx(losses[1], rel=1e-6)


def test_dueling_head_q_is_value_plus_centred_advantage():
    agent = dqn.make(dqn.DQNConfig(dueling=True, layer_norm=False), num_updates=1000)
    state = agent.init(jax.random.PRNGKey(0), CARTPOLE_SPEC)
    params = state.params["params"]
    head = params["QHead_0"]
    assert set(head) == {"value", "advantage"}
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
    features = MLP((64, 64), "relu").apply({"params": params["torso"]}, obs)
    value = features @ head["value"]["kernel"] + head["value"]["bias"]
    advantage = features @ head["advantage"]["kernel"] + head["advantage"]["bias"]
    q = state.network.apply(state.params, obs)
    np.testing.assert_allclose(q, value + advantage - advantage.mean(-1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(q.mean(-1), value[:, 0], rtol=1e-5, atol=1e-6)


def test_continuous_actions_are_refused():
    spec = EnvSpec(CARTPOLE_SPEC.observation_space, gymnasium.spaces.Box(-1, 1, (1,)))
    agent = dqn.make(dqn.DQNConfig(), num_updates=1000)
    with pytest.raises(ValueError, match="DQN needs a discrete action space"):
        agent.init(jax.random.PRNGKey(0), spec)


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="num_envs must be a positive integer"):
        dqn.DQNConfig(num_envs=0)
    with pytest.raises(ValueError, match="larger than buffer_size"):
        dqn.DQNConfig(batch_size=100, buffer_size=10)
    with pytest.raises(ValueError, match="loss must be one of"):
        dqn.DQNConfig(loss="l1")


def test_four_devices_learn_like_one_on_the_same_global_batch():
    config = dqn.DQNConfig(double_q=True)
    single = dqn.make(config, num_updates=1000)
    parallel = dqn.make(config, num_updates=1000, axis_name=AXIS)
    state = single.init(jax.random.PRNGKey(0), CARTPOLE_SPEC)
    batch = replay_sample(transitions(jax.random.PRNGKey(1), (64,)))
    key = jax.random.PRNGKey(2)
    expected, m1 = jax.jit(single.learn)(state, batch, key)
    got, m4 = data_parallel(parallel.learn, 4, batch_axis=0)(state, batch, key)
    chex.assert_trees_all_close(got.params, expected.params, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(m4["loss"], m1["loss"], rtol=1e-5)
