import chex
import distrax
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax
from purerl.agents import impala
from purerl.core import EnvSpec, mask_illegal

from tests.helpers import CARTPOLE_SPEC, transitions


def test_vtrace_on_policy_is_the_discounted_return_by_hand():
    # Two steps, then an episode that terminates, rho = 1, lambda = 1, gamma 0.5.
    out = impala.vtrace(
        r_t=jnp.array([1.0, 2.0, 4.0]),
        terminated_t=jnp.array([False, True, False]),
        truncated_t=jnp.zeros(3, bool),
        v_tm1=jnp.array([0.0, 1.0, 3.0]),
        v_t=jnp.array([1.0, 9.0, 8.0]),
        rho_tm1=jnp.ones(3),
        gamma=0.5,
    )
    # targets: 1 + 0.5 * 2 = 2; 2 (terminal); 4 + 0.5 * 8 = 8.
    np.testing.assert_allclose(out.errors, [2.0 - 0.0, 2.0 - 1.0, 8.0 - 3.0])
    # pg advantages: r + gamma * v_s(next) - v: 1 + 0.5 * 2 - 0 = 2; 2 - 1 = 1; 8 - 3 = 5.
    np.testing.assert_allclose(out.pg_advantage, [2.0, 1.0, 5.0])


def test_vtrace_with_a_truncation_equals_rlax_on_the_folded_trajectory():
    rng = np.random.default_rng(0)
    t = 6
    r, v_tm1, v_t = (jnp.asarray(rng.normal(size=t), jnp.float32) for _ in range(3))
    rho = jnp.asarray(rng.uniform(0.3, 2.0, t), jnp.float32)
    truncated = jnp.array([False, False, True, False, False, False])
    terminated = jnp.array([False, False, False, False, True, False])
    gamma, lam = 0.9, 0.95
    out = impala.vtrace(r, terminated, truncated, v_tm1, v_t, rho, gamma, lam, 1.0, 1.0)
    # By hand: the truncated step's reward takes gamma * v(final) and its discount is 0.
    folded = r.at[2].add(gamma * v_t[2])
    discount = jnp.array([gamma, gamma, 0.0, gamma, 0.0, gamma])
    expected = rlax.vtrace_td_error_and_advantage(v_tm1, v_t, folded, discount, rho, lam)
    chex.assert_trees_all_close(out, expected, rtol=1e-5)
    # Clipping: the ratios above 1 count as 1 in the targets.
    unclipped = impala.vtrace(r, terminated, truncated, v_tm1, v_t, rho, gamma, lam, 10.0, 10.0)
    assert not np.allclose(out.errors, unclipped.errors)


def test_learn_steps_on_a_rollout_with_ratios_of_one_when_on_policy():
    config = impala.IMPALAConfig(lr_schedule="constant", hidden_sizes=(8,), num_envs=4)
    agent = impala.make(config)
    state = agent.init(jax.random.PRNGKey(0), CARTPOLE_SPEC)
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 4, 4))
    actions, _, extras = jax.vmap(agent.act, in_axes=(None, None, 0, 0))(
        state, (), obs, jax.random.split(jax.random.PRNGKey(2), 5)
    )
    batch = transitions(jax.random.PRNGKey(3), (5, 4))._replace(
        obs=obs, action=actions, extras=extras
    )
    learn = jax.jit(chex.assert_max_traces(agent.learn, n=1))
    new, metrics = learn(state, batch, jax.random.PRNGKey(4))
    assert float(metrics["rho_mean"]) == pytest.approx(1.0, abs=1e-5)
    assert int(new.steps) == 1 and all(np.isfinite(v) for v in jax.tree.leaves(metrics))
    new, metrics = learn(new, batch, jax.random.PRNGKey(4))  # Now the rollout is stale.
    assert float(metrics["rho_mean"]) != pytest.approx(1.0, abs=1e-5)


def test_masked_learn_takes_log_probs_and_entropy_from_the_legal_policy():
    # Observations of 4 features followed by the legal-action mask of 3 actions, one or two
    # of them legal in each.
    spec = EnvSpec(
        gymnasium.spaces.Box(-np.inf, np.inf, (7,), np.float32),
        gymnasium.spaces.Discrete(3),
        action_mask=True,
    )
    config = impala.IMPALAConfig(lr_schedule="constant", hidden_sizes=(8,), num_envs=4)
    agent = impala.make(config)
    state = agent.init(jax.random.PRNGKey(0), spec)
    t, b = 5, 4
    masks = jnp.tile(jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), (t * b // 2, 1))
    features = jax.random.normal(jax.random.PRNGKey(1), (t * b, 4))
    obs = jnp.concatenate([features, masks], axis=1).reshape(t, b, 7)
    actions, _, extras = jax.vmap(agent.act, in_axes=(None, None, 0, 0))(
        state, (), obs, jax.random.split(jax.random.PRNGKey(2), t)
    )
    next_obs = jnp.roll(obs, -1, axis=0)
    batch = transitions(jax.random.PRNGKey(3), (t, b))._replace(
        obs=obs, action=actions, next_obs=next_obs, extras=extras
    )
    _, metrics = jax.jit(agent.learn)(state, batch, jax.random.PRNGKey(4))
    # By hand: the policy that acted is the masked one, so on its own rollout the ratios
    # are 1 (the unmasked policy's would be below 1: it puts mass on illegal actions).
    network = state.network
    pi, v_tm1 = network.apply(state.params, obs)
    legal = distrax.Categorical(logits=mask_illegal(pi.logits, obs, True))
    v_t = network.apply(state.params, next_obs, method=network.value)
    out = jax.vmap(impala.vtrace, in_axes=(1, 1, 1, 1, 1, 1, None), out_axes=1)(
        batch.reward, batch.terminated, batch.truncated, v_tm1, v_t, jnp.ones((t, b)), 0.99
    )
    pg_loss = -jnp.mean(legal.log_prob(actions) * out.pg_advantage)
    assert float(metrics["rho_mean"]) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(metrics["entropy"], jnp.mean(legal.entropy()), rtol=1e-5)
    np.testing.assert_allclose(metrics["pg_loss"], pg_loss, rtol=1e-5)
    assert not np.isclose(float(jnp.mean(pi.entropy())), float(metrics["entropy"]))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="vtrace_lambda"):
        impala.IMPALAConfig(vtrace_lambda=1.5)
    with pytest.raises(ValueError, match="no recurrent variant"):
        impala.IMPALAConfig(torso="lstm")
