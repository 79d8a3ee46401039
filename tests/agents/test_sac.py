import chex
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from purerl.agents import sac
from purerl.core import EnvSpec

from tests.helpers import PENDULUM_SPEC
from tests.helpers import pendulum_batch as batch

SMALL = sac.SACConfig(hidden_sizes=(32, 32), batch_size=16, buffer_size=64, learning_starts=16)


def test_critic_loss_by_hand():
    q_tm1 = jnp.array([[1.0, 2.0], [0.0, 2.0]])  # [2 critics, 2 samples]
    q_t = jnp.array([[3.0, 1.0], [2.0, 4.0]])
    loss, td = sac.critic_loss(
        q_tm1,
        r_t=jnp.array([1.0, 0.0]),
        discount_t=jnp.array([0.5, 0.0]),  # The second sample terminated.
        q_t=q_t,
        log_prob_t=jnp.array([-1.0, 5.0]),
        alpha=jnp.asarray(0.5),
    )
    # soft v_t = min(3, 2) - 0.5 * -1 = 2.5 and (unused: discount 0).
    # targets: 1 + 0.5 * 2.5 = 2.25 and 0.
    # td: critic 0 (1.25, -2), critic 1 (2.25, -2)
    np.testing.assert_allclose(td, [[1.25, -2.0], [2.25, -2.0]], rtol=1e-6)
    # loss: mean(0.5 td^2) per critic, summed: (0.78125 + 2) / 2 + (2.53125 + 2) / 2
    np.testing.assert_allclose(loss, (0.78125 + 2) / 2 + (2.53125 + 2) / 2, rtol=1e-6)


def test_actor_loss_by_hand():
    q = jnp.array([[1.0, 4.0], [2.0, 3.0]])
    log_prob = jnp.array([-1.0, 1.0])
    # mean(0.2 * (-1, 1) - (1, 3)) = mean(-1.2, -2.8) = -2
    np.testing.assert_allclose(sac.actor_loss(q, log_prob, jnp.asarray(0.2)), -2.0, rtol=1e-6)


def test_twin_critics_equal_separate_networks_in_outputs_and_gradients():
    from purerl.networks import MLP, TwinQ

    critic = TwinQ((16, 8), "silu", kernel_init="lecun_normal")
    obs = jax.random.normal(jax.random.PRNGKey(0), (7, 3))
    action = jax.random.uniform(jax.random.PRNGKey(2), (7, 1), minval=-1.0, maxval=1.0)
    params = critic.init(jax.random.PRNGKey(1), obs, action)

    def separate(params, action):
        """Each critic as its own MLP and output layer, on its slice of the parameters."""
        x = jnp.concatenate([obs, action], axis=-1)
        qs = []
        for i in range(2):
            member = jax.tree.map(lambda p, i=i: p[i], params["params"]["Vmap_QFunction_0"])
            mlp = MLP((16, 8), "silu", kernel_init="lecun_normal")
            features = mlp.apply({"params": member["MLP_0"]}, x)
            qs.append(features @ member["Dense_0"]["kernel"][:, 0] + member["Dense_0"]["bias"][0])
        return jnp.stack(qs)

    stacked = lambda p, a: critic.apply(p, obs, a)  # noqa: E731
    np.testing.assert_allclose(stacked(params, action), separate(params, action), atol=1e-5)

    def loss(fn):
        return lambda p, a: jnp.sum(jnp.sin(fn(p, a)))

    # With respect to the parameters (the critics' loss) and the action (the policy's).
    grads = jax.grad(loss(stacked), argnums=(0, 1))(params, action)
    expected = jax.grad(loss(separate), argnums=(0, 1))(params, action)
    chex.assert_trees_all_close(grads, expected, rtol=1e-5, atol=1e-5)


def test_temperature_loss_moves_alpha_toward_the_target_entropy():
    grad = jax.grad(sac.alpha_loss)
    # Entropy 0.5 (log-prob -0.5) below a target of 1: the loss falls as alpha grows.
    assert grad(jnp.asarray(0.0), jnp.full((8,), -0.5), 1.0) < 0
    # Entropy 3 above the target: alpha shrinks.
    assert grad(jnp.asarray(0.0), jnp.full((8,), -3.0), 1.0) > 0


def test_actions_are_rescaled_to_the_bounds_and_deterministic_is_the_mean():
    agent = sac.make(SMALL)
    state = agent.init(jax.random.PRNGKey(0), PENDULUM_SPEC)
    obs = jax.random.normal(jax.random.PRNGKey(1), (500, 3))
    action, carry, _ = jax.jit(agent.act)(state, (), obs, jax.random.PRNGKey(2))
    chex.assert_shape(action, (500, 1))
    assert carry == () and np.all(np.abs(action) <= 2.0) and float(jnp.std(action)) > 0.5
    mean, _, _ = agent.act(state, (), obs, jax.random.PRNGKey(2), deterministic=True)
    dist = state.actor.apply(state.actor_params, obs)
    np.testing.assert_allclose(mean, 2.0 * jnp.tanh(dist.distribution.mean()), atol=1e-6)


def test_learn_updates_every_part_and_targets_by_polyak():
    agent = sac.make(SMALL)
    state = agent.init(jax.random.PRNGKey(0), PENDULUM_SPEC)
    learn = jax.jit(chex.assert_max_traces(agent.learn, n=1))
    new, metrics = learn(state, batch(jax.random.PRNGKey(1)), jax.random.PRNGKey(2))
    new, metrics = learn(new, batch(jax.random.PRNGKey(3)), jax.random.PRNGKey(4))
    assert int(new.steps) == 2
    for old, now in (
        (state.actor_params, new.actor_params),
        (state.critic_params, new.critic_params),
    ):
        with pytest.raises(AssertionError):
            chex.assert_trees_all_close(old, now)
    assert float(new.log_alpha) != float(state.log_alpha)
    # Polyak: the targets moved, but only a little (tau = 0.005).
    moved = jax.tree.map(
        lambda t, o: jnp.max(jnp.abs(t - o)), new.target_critic_params, state.critic_params
    )
    assert 0 < max(jax.tree.leaves(moved)) < 0.01
    assert set(metrics) >= {"critic_loss", "actor_loss", "alpha", "entropy", "priorities"}
    for leaf in jax.tree.leaves(metrics):
        assert np.all(np.isfinite(leaf))


def test_fixed_temperature_stays_fixed():
    agent = sac.make(sac.SACConfig(hidden_sizes=(8,), autotune_alpha=False, init_alpha=0.3))
    state = agent.init(jax.random.PRNGKey(0), PENDULUM_SPEC)
    new, metrics = agent.learn(state, batch(jax.random.PRNGKey(1)), jax.random.PRNGKey(2))
    np.testing.assert_allclose(metrics["alpha"], 0.3, rtol=1e-6)


def test_discrete_actions_and_unbounded_boxes_are_refused():
    agent = sac.make(SMALL)
    with pytest.raises(ValueError, match="SAC needs a continuous action space"):
        agent.init(
            jax.random.PRNGKey(0),
            EnvSpec(PENDULUM_SPEC.observation_space, gymnasium.spaces.Discrete(2)),
        )
    unbounded = gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    with pytest.raises(ValueError, match="must be finite"):
        agent.init(jax.random.PRNGKey(0), EnvSpec(PENDULUM_SPEC.observation_space, unbounded))
    with pytest.raises(ValueError, match="learning_starts"):
        sac.SACConfig(buffer_size=100, batch_size=10, learning_starts=1000)
