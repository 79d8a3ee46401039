import ast
import inspect

import chex
import distrax
import flax
import flax.linen as nn
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from purerl.agents import ppo
from purerl.core import EnvSpec, Transition, reset_carry
from purerl.networks.heads import stack_torsos, unstack_torsos

from tests.helpers import AXIS, CARTPOLE_SPEC, data_parallel, transitions


def test_gae_by_hand_terminated_step_does_not_bootstrap():
    # gamma = lambda = 0.5; step 1 terminates.
    adv = ppo.gae_advantages(
        r_t=jnp.array([1.0, 1.0, 1.0]),
        terminated_t=jnp.array([False, True, False]),
        truncated_t=jnp.array([False, False, False]),
        v_tm1=jnp.array([1.0, 2.0, 3.0]),
        v_t=jnp.array([2.0, 10.0, 4.0]),  # v_t[1] is the ended episode's: unused.
        gamma=0.5,
        gae_lambda=0.5,
    )
    # delta_2 = 1 + 0.5 * 4 - 3 = 0                 -> A_2 = 0
    # delta_1 = 1 + 0 - 2 = -1 (terminal)           -> A_1 = -1
    # delta_0 = 1 + 0.5 * 2 - 1 = 1                 -> A_0 = 1 + 0.25 * (-1) = 0.75
    np.testing.assert_allclose(adv, [0.75, -1.0, 0.0], rtol=1e-6)


def test_gae_by_hand_truncated_step_bootstraps_from_final_observation():
    adv = ppo.gae_advantages(
        r_t=jnp.array([1.0, 1.0, 1.0]),
        terminated_t=jnp.array([False, False, False]),
        truncated_t=jnp.array([False, True, False]),
        v_tm1=jnp.array([1.0, 2.0, 3.0]),
        v_t=jnp.array([2.0, 10.0, 4.0]),  # v(final obs of step 1) = 10.
        gamma=0.5,
        gae_lambda=0.5,
    )
    # delta_1 = 1 + 0.5 * 10 - 2 = 4, and the recursion stops there -> A_1 = 4
    # A_0 = (1 + 0.5 * 2 - 1) + 0.25 * 4 = 2
    np.testing.assert_allclose(adv, [2.0, 4.0, 0.0], rtol=1e-6)


class FixedPolicy(nn.Module):
    """pi = softmax(logits param), v = v param, whatever the observation."""

    @nn.compact
    def __call__(self, obs):
        logits = self.param("logits", nn.initializers.zeros, (2,))
        value = self.param("v", nn.initializers.zeros, ())
        batch = obs.shape[:-1]
        return (
            distrax.Categorical(logits=jnp.broadcast_to(logits, batch + (2,))),
            jnp.broadcast_to(value, batch),
        )


def test_ppo_loss_by_hand():
    network = FixedPolicy()
    params = network.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))  # pi = (0.5, 0.5), v = 0
    batch = Transition(
        obs=jnp.zeros((2, 4)),
        action=jnp.array([0, 1]),
        reward=jnp.zeros(2),
        terminated=jnp.zeros(2, bool),
        truncated=jnp.zeros(2, bool),
        next_obs=jnp.zeros((2, 4)),
        extras={"log_prob": jnp.log(jnp.array([0.25, 0.5])), "value": jnp.array([0.5, 0.0])},
    )
    loss, info = ppo.ppo_loss(
        params,
        lambda p, b: network.apply(p, b.obs),
        batch,
        jnp.array([1.0, -1.0]),
        jnp.array([1.0, 3.0]),
        clip_eps=0.2,
        clip_value=True,
        vf_coef=0.5,
        ent_coef=0.01,
    )
    # ratios: 0.5 / 0.25 = 2 and 0.5 / 0.5 = 1
    # surrogate: min(2 * 1, 1.2 * 1) = 1.2; min(1 * -1, 1 * -1) = -1 -> pg = -(1.2 - 1) / 2 = -0.1
    np.testing.assert_allclose(info["pg_loss"], -0.1, rtol=1e-6)
    # value 0, targets (1, 3), old values (0.5, 0): unclipped squares (1, 9);
    # clipped values (0.5 - 0.2, 0) = (0.3, 0) -> squares (0.49, 9); max (1, 9) -> 0.5 * 5 = 2.5
    np.testing.assert_allclose(info["value_loss"], 2.5, rtol=1e-6)
    # entropy of a fair coin: log 2
    np.testing.assert_allclose(info["entropy"], np.log(2), rtol=1e-6)
    np.testing.assert_allclose(loss, -0.1 + 0.5 * 2.5 - 0.01 * np.log(2), rtol=1e-6)
    # Half the ratios lie outside [0.8, 1.2].
    np.testing.assert_allclose(info["clip_fraction"], 0.5)


def rollout(key, num_steps=8, num_envs=4, agent=None):
    agent = agent or ppo.make(ppo.PPOConfig(lr_schedule="constant"))
    state = agent.init(jax.random.PRNGKey(0), CARTPOLE_SPEC)
    batch = transitions(key, (num_steps, num_envs))
    _, _, extras = agent.act(state, (), batch.obs, jax.random.PRNGKey(5))
    return state, batch._replace(extras=extras)


def test_act_shapes_under_jit_and_vmap():
    agent = ppo.make(ppo.PPOConfig(lr_schedule="constant"))
    state = agent.init(jax.random.PRNGKey(0), CARTPOLE_SPEC)
    obs = jax.random.normal(jax.random.PRNGKey(1), (6, 4))
    action, carry, info = jax.jit(agent.act)(state, (), obs, jax.random.PRNGKey(2))
    assert carry == ()
    chex.assert_shape([action, info["log_prob"], info["value"]], (6,))
    assert action.dtype == jnp.int32 and info["log_prob"].dtype == jnp.float32
    keys = jax.random.split(jax.random.PRNGKey(3), 6)
    single, _, _ = jax.vmap(agent.act, in_axes=(None, None, 0, 0))(state, (), obs, keys)
    chex.assert_shape(single, (6,))
    mode, _, _ = agent.act(state, (), obs, jax.random.PRNGKey(2), deterministic=True)
    pi, _ = state.network.apply(state.params, obs)
    np.testing.assert_array_equal(mode, jnp.argmax(pi.logits, -1))


def test_learn_changes_params_and_counts_without_retracing():
    agent = ppo.make(ppo.PPOConfig(num_envs=4, num_steps=8, num_minibatches=2), num_updates=10)
    state, batch = rollout(jax.random.PRNGKey(1), agent=agent)
    learn = jax.jit(chex.assert_max_traces(agent.learn, n=1))
    new, metrics = learn(state, batch, jax.random.PRNGKey(2))
    new, metrics = learn(new, batch, jax.random.PRNGKey(3))
    assert int(new.steps) == 2
    with pytest.raises(AssertionError):
        chex.assert_trees_all_close(new.params, state.params)
    assert set(metrics) >= {"pg_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"}
    for leaf in jax.tree.leaves((new.params, metrics)):
        assert np.all(np.isfinite(leaf))


def test_gradients_are_finite_and_zero_through_old_policy_terms():
    state, batch = rollout(jax.random.PRNGKey(1), num_steps=4, num_envs=2)
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batch)

    def loss_of_old_log_prob(old_log_prob):
        b = flat._replace(extras={**flat.extras, "log_prob": old_log_prob})
        return ppo.ppo_loss(
            state.params,
            lambda p, b: state.network.apply(p, b.obs),
            b,
            jnp.ones(8),
            jnp.ones(8),
            clip_eps=0.2,
            clip_value=True,
            vf_coef=0.5,
            ent_coef=0.01,
        )[0]

    grads = jax.grad(
        lambda p: ppo.ppo_loss(
            p,
            lambda p, b: state.network.apply(p, b.obs),
            flat,
            jnp.ones(8),
            jnp.ones(8),
            clip_eps=0.2,
            clip_value=True,
            vf_coef=0.5,
            ent_coef=0.01,
        )[0]
    )(state.params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    # The behaviour policy's log-probs are data: rlax stops gradients through the ratio's target.
    assert np.all(np.isfinite(jax.grad(loss_of_old_log_prob)(flat.extras["log_prob"])))


PENDULUM_SPEC = EnvSpec(
    gymnasium.spaces.Box(-8.0, 8.0, (3,), np.float32),
    gymnasium.spaces.Box(-2.0, 2.0, (1,), np.float32),
)


def test_gaussian_log_probabilities_by_hand():
    from purerl.networks import GaussianHead, TanhGaussianPolicy

    head = GaussianHead(2, log_std_init=np.log(2.0))
    params = head.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))
    params = jax.tree.map(jnp.zeros_like, params)  # Mean 0; the log-std parameter now log 1.
    pi = head.apply(params, jnp.zeros((1, 3)))
    x = jnp.array([[0.5, -1.0]])
    # Two independent N(0, 1): -0.5 * (0.25 + 1) - log(2 pi).
    np.testing.assert_allclose(pi.log_prob(x), -0.625 - np.log(2 * np.pi), rtol=1e-6)
    np.testing.assert_allclose(pi.entropy(), 1 + np.log(2 * np.pi), rtol=1e-6)
    # The initial std is exp(log_std_init).
    fresh = head.apply(head.init(jax.random.PRNGKey(0), jnp.zeros((1, 3))), jnp.zeros((1, 3)))
    np.testing.assert_allclose(fresh.stddev(), [[2.0, 2.0]], rtol=1e-6)

    class Identity(nn.Module):
        @nn.compact
        def __call__(self, x):
            return x

    tanh = TanhGaussianPolicy(Identity(), 1)
    params = jax.tree.map(jnp.zeros_like, tanh.init(jax.random.PRNGKey(0), jnp.zeros((1, 2))))
    y = jnp.array([[0.5]])  # tanh of u = atanh(0.5), u ~ N(0, 1): log N(u) - log(1 - y^2).
    u = np.arctanh(0.5)
    hand = -0.5 * u**2 - 0.5 * np.log(2 * np.pi) - np.log(1 - 0.25)
    np.testing.assert_allclose(tanh.apply(params, jnp.zeros((1, 2))).log_prob(y), [hand], rtol=1e-5)


def test_continuous_actions_are_a_clipped_rescaled_gaussian():
    config = ppo.PPOConfig(lr_schedule="constant", hidden_sizes=(16,), log_std_init=0.5)
    agent = ppo.make(config)
    state = agent.init(jax.random.PRNGKey(0), PENDULUM_SPEC)
    obs = jax.random.normal(jax.random.PRNGKey(1), (4000, 3))
    action, _, extras = jax.jit(agent.act)(state, (), obs, jax.random.PRNGKey(2))
    raw = extras["raw_action"]
    chex.assert_shape([action, raw], (4000, 1))
    np.testing.assert_allclose(action, 2.0 * jnp.clip(raw, -1.0, 1.0), atol=1e-6)
    assert float(jnp.std(raw)) == pytest.approx(np.exp(0.5), rel=0.05)
    assert float(jnp.max(jnp.abs(action))) == pytest.approx(2.0)  # Clipped at the bounds.
    pi, _ = state.network.apply(state.params, obs)
    np.testing.assert_allclose(extras["log_prob"], pi.log_prob(raw), rtol=1e-6)
    mode, _, _ = agent.act(state, (), obs, jax.random.PRNGKey(2), deterministic=True)
    np.testing.assert_allclose(mode, 2.0 * jnp.clip(pi.mode(), -1.0, 1.0), atol=1e-6)


def test_continuous_learn_takes_the_ratio_on_the_raw_sample():
    agent = ppo.make(ppo.PPOConfig(lr_schedule="constant", hidden_sizes=(16,), num_envs=4))
    state = agent.init(jax.random.PRNGKey(0), PENDULUM_SPEC)
    obs = jax.random.normal(jax.random.PRNGKey(1), (8, 4, 3))
    action, _, extras = jax.vmap(agent.act, in_axes=(None, None, 0, 0))(
        state, (), obs, jax.random.split(jax.random.PRNGKey(2), 8)
    )
    rollout = Transition(
        obs,
        action,
        jnp.ones((8, 4)),
        jnp.zeros((8, 4), bool),
        jnp.zeros((8, 4), bool),
        obs,
        extras,
    )
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), rollout)
    zeros = jnp.zeros((32,))
    _, info = ppo.ppo_loss(
        state.params,
        lambda p, b: state.network.apply(p, b.obs),
        flat,
        zeros,
        flat.extras["value"],
        clip_eps=0.2,
        clip_value=True,
        vf_coef=0.5,
        ent_coef=0.0,
    )
    # The policy that acted gives ratio 1 exactly, even where the action was clipped.
    assert float(info["approx_kl"]) == pytest.approx(0.0, abs=1e-6)
    assert float(info["clip_fraction"]) == 0.0
    new, metrics = jax.jit(agent.learn)(state, rollout, jax.random.PRNGKey(3))
    assert all(np.isfinite(v) for v in jax.tree.leaves(metrics))
    assert int(new.steps) == 1


def test_recurrent_continuous_ppo_is_refused():
    agent = ppo.make(ppo.PPOConfig(lr_schedule="constant", torso="lstm", num_minibatches=2))
    with pytest.raises(ValueError, match="recurrent torso has a categorical policy only"):
        agent.init(jax.random.PRNGKey(0), PENDULUM_SPEC)
    unbounded = EnvSpec(
        PENDULUM_SPEC.observation_space, gymnasium.spaces.Box(-np.inf, np.inf, (1,))
    )
    with pytest.raises(ValueError, match="must be finite"):
        ppo.make(ppo.PPOConfig(lr_schedule="constant")).init(jax.random.PRNGKey(0), unbounded)


def test_a2c_step_is_the_plain_policy_gradient():
    # One step on the whole rollout: the clipped surrogate at ratio 1 has the gradient of
    # -mean(log pi(a|s) * A), and the clipped value loss equals the plain one.
    config = ppo.A2CConfig(lr_schedule="constant", hidden_sizes=(8,), num_envs=4)
    agent = ppo.make(config)
    state = agent.init(jax.random.PRNGKey(0), CARTPOLE_SPEC)
    obs = jax.random.normal(jax.random.PRNGKey(1), (16, 4))
    pi, value = state.network.apply(state.params, obs)
    action = pi.sample(seed=jax.random.PRNGKey(2))
    batch = transitions(jax.random.PRNGKey(3), (16,))._replace(
        obs=obs, action=action, extras={"log_prob": pi.log_prob(action), "value": value}
    )
    adv = jax.random.normal(jax.random.PRNGKey(4), (16,))
    targets = jax.random.normal(jax.random.PRNGKey(5), (16,))

    def a2c(params):
        pi, v = state.network.apply(params, obs)
        return -jnp.mean(pi.log_prob(action) * adv) + 0.5 * 0.5 * jnp.mean((v - targets) ** 2)

    def surrogate(params):
        forward = lambda p, b: state.network.apply(p, b.obs)  # noqa: E731
        kwargs = dict(clip_eps=0.2, clip_value=True, vf_coef=0.5, ent_coef=0.0)
        return ppo.ppo_loss(params, forward, batch, adv, targets, **kwargs)[0]

    chex.assert_trees_all_close(jax.grad(surrogate)(state.params), jax.grad(a2c)(state.params))
    with pytest.raises(ValueError, match="A2C takes one gradient step per rollout"):
        ppo.A2CConfig(update_epochs=4)


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="num_envs must be a positive integer"):
        ppo.PPOConfig(num_envs=0)
    with pytest.raises(ValueError, match="must divide the rollout"):
        ppo.PPOConfig(num_envs=3, num_steps=5, num_minibatches=4)
    with pytest.raises(ValueError, match="needs the run's number of gradient steps"):
        ppo.make(ppo.PPOConfig(lr_schedule="linear"))
    with pytest.raises(ValueError, match="Unknown optimizer 'adamm'"):
        ppo.PPOConfig(optimizer="adamm")
    with pytest.raises(ValueError, match="num_minibatches .* must divide num_envs"):
        ppo.PPOConfig(torso="lstm", num_envs=6, num_minibatches=4)


@pytest.mark.parametrize("size", [1, 4, 500, 70_000])  # 70,000: JAX's own shuffle.
def test_permutations_are_permutations_a_function_of_the_key(size):
    perms = np.asarray(ppo.permutations(jax.random.PRNGKey(0), 3, size))
    assert perms.shape == (3, size) and perms.dtype == np.int32
    for row in perms:
        np.testing.assert_array_equal(np.sort(row), np.arange(size))
    np.testing.assert_array_equal(perms, ppo.permutations(jax.random.PRNGKey(0), 3, size))
    if size > 4:
        assert not np.array_equal(perms[0], perms[1])


def test_permutations_put_each_element_anywhere_equally_often():
    draws = 24_000
    perms = np.asarray(ppo.permutations(jax.random.PRNGKey(1), draws, 4))
    # Each element's position: 1/4 each, within 6 standard deviations (about 0.017).
    freq = np.stack([(perms == i).mean(0) for i in range(4)])
    np.testing.assert_allclose(freq, 0.25, atol=0.017)
    # All 24 orders occur, each about 1/24 of the time.
    _, counts = np.unique(perms @ (4 ** np.arange(4)), return_counts=True)
    assert counts.size == 24
    np.testing.assert_allclose(counts / draws, 1 / 24, atol=0.008)


def test_unrolled_threefry_draws_the_same_bits_without_a_loop():
    from purerl.experiments.engine.anakin import unrolled_threefry

    def lower(key):  # A new function each time: JAX caches a function's lowering.
        def draw(key):
            a, b = jax.random.split(key)
            return jax.random.bits(a, (5,)), jax.random.uniform(b, (3, 2))

        return jax.jit(draw).lower(key)

    key = jax.random.PRNGKey(7)
    default = lower(key)
    with unrolled_threefry():
        unrolled = lower(key)
    after = lower(key)  # The CPU's own rule is back.
    chex.assert_trees_all_equal(default.compile()(key), unrolled.compile()(key))
    if jax.default_backend() == "cpu":
        assert "while" in default.compile().as_text()
        assert "while" not in unrolled.compile().as_text()
        assert "while" in after.compile().as_text()


def test_four_devices_learn_like_one_on_the_same_global_batch():
    # One minibatch per epoch: each device's shuffle then covers the same global set.
    config = ppo.PPOConfig(
        num_envs=8, num_steps=8, num_minibatches=1, update_epochs=2, lr_schedule="constant"
    )
    state, batch = rollout(jax.random.PRNGKey(1), num_steps=8, num_envs=8)
    key = jax.random.PRNGKey(2)
    expected, m1 = jax.jit(ppo.make(config).learn)(state, batch, key)
    parallel = ppo.make(config, axis_name=AXIS).learn
    got, m4 = data_parallel(parallel, 4, batch_axis=1)(state, batch, key)
    chex.assert_trees_all_close(got.params, expected.params, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(m4["value_loss"], m1["value_loss"], rtol=1e-4)


def recurrent_rollout(cell, steps=6, envs=3):
    """Acts step by step with a recurrent PPO, resetting the carry where episodes end."""
    config = ppo.PPOConfig(
        torso=cell, hidden_sizes=(16, 8), lr_schedule="constant", num_envs=envs, num_minibatches=1
    )
    agent = ppo.make(config)
    state = agent.init(jax.random.PRNGKey(0), CARTPOLE_SPEC)
    batch = transitions(jax.random.PRNGKey(1), (steps, envs))
    done = jnp.zeros((steps, envs), bool).at[2, 0].set(True).at[3, 1].set(True)
    batch = batch._replace(terminated=done)
    carry = agent.initial_carry(envs)
    carries, extras, logits = [], [], []
    for t in range(steps):
        carries.append(carry)
        _, new_carry, info = agent.act(state, carry, batch.obs[t], jax.random.PRNGKey(t))
        extras.append(info)
        logits.append(state.network.apply(state.params, carry, batch.obs[t])[1][0].logits)
        carry = reset_carry(agent.initial_carry(envs), new_carry, done[t])
    stack = lambda *x: jnp.stack(x)  # noqa: E731
    batch = batch._replace(extras=jax.tree.map(stack, *extras), carry=jax.tree.map(stack, *carries))
    return agent, state, batch, jnp.stack(logits)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrent_unroll_equals_acting_step_by_step(cell):
    agent, state, batch, logits = recurrent_rollout(cell)
    (pi, value), _ = ppo.unroll(state.network, state.params, batch, agent.initial_carry(3))
    np.testing.assert_allclose(pi.logits, logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(value, batch.extras["value"], rtol=1e-5, atol=1e-6)
    # Without the resets the episode after an end would see the old episode's memory.
    no_reset = batch._replace(terminated=jnp.zeros_like(batch.terminated))
    (pi2, _), _ = ppo.unroll(state.network, state.params, no_reset, agent.initial_carry(3))
    assert not np.allclose(pi2.logits[3:, 0], logits[3:, 0], atol=1e-6)


def test_recurrent_learn_changes_params_and_carries_are_per_env():
    agent, state, batch, _ = recurrent_rollout("lstm", steps=8, envs=4)
    carry = agent.initial_carry(4)
    chex.assert_shape(jax.tree.leaves(carry), (4, 8))
    new, metrics = jax.jit(agent.learn)(state, batch, jax.random.PRNGKey(2))
    with pytest.raises(AssertionError):
        chex.assert_trees_all_close(new.params, state.params)
    assert all(np.isfinite(v) for v in metrics.values())


def test_ppo_imports_no_continuous_control_agent():
    # Action bounds come from `purerl.core`, not from the SAC/TD3 family.
    tree = ast.parse(inspect.getsource(ppo))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"purerl.agents.continuous", "purerl.agents.sac", "purerl.agents.td3"}


@pytest.mark.parametrize("saved_stacked", [False, True])
def test_a_policy_saved_in_one_torso_layout_loads_in_the_other_with_its_optimizer(saved_stacked):
    # Torsos apart: the default; stacked: --stack-torsos. Two seeds, one
    # Adam step taken.
    config = ppo.PPOConfig(hidden_sizes=(8, 8), lr_schedule="constant")
    tx = optax.flatten(config.make_optimizer(config.learning_rate, None))
    network = ppo.make(config).init(jax.random.PRNGKey(0), CARTPOLE_SPEC).network
    saved_net, net = network.clone(stack=saved_stacked), network.clone(stack=not saved_stacked)
    to_loaded = unstack_torsos if saved_stacked else stack_torsos
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 4))

    def state(network, seed):
        params = network.init(jax.random.PRNGKey(seed), obs)
        grads = jax.tree.map(lambda p: p + 0.5, params)
        _, opt_state = tx.update(grads, tx.init(params), params)
        return ppo.PPOState(params, opt_state, jnp.int32(seed), network), grads

    (a, grads_a), (b, _) = state(saved_net, 1), state(saved_net, 2)
    saved = jax.tree.map(lambda x, y: jnp.stack([x, y]), a, b)
    two_seeds = jax.tree.map(lambda x: jnp.stack([x, x]), state(net, 0)[0])
    loaded = flax.serialization.from_bytes(two_seeds, flax.serialization.to_bytes(saved))

    first = jax.tree.map(lambda x: x[0], loaded)
    chex.assert_trees_all_equal(first.params, to_loaded(a.params))
    _, expected = tx.update(to_loaded(grads_a), tx.init(first.params), first.params)
    chex.assert_trees_all_close(first.opt_state, expected)
    pi, v = net.apply(first.params, obs)
    saved_pi, saved_v = saved_net.apply(a.params, obs)
    np.testing.assert_allclose(pi.logits, saved_pi.logits, atol=1e-6)
    np.testing.assert_allclose(v, saved_v, atol=1e-6)
    assert int(loaded.steps[1]) == 2


def test_stack_torsos_is_refused_where_there_are_no_two_mlps_to_stack():
    config = ppo.PPOConfig(stack_torsos=True, torso="lstm", lr_schedule="constant")
    with pytest.raises(ValueError, match="--stack-torsos stacks two MLP torsos"):
        ppo.make(config).init(jax.random.PRNGKey(0), CARTPOLE_SPEC)


def test_sample_categorical_draws_what_distrax_draws_with_its_log_prob():
    logits = 3.0 * jax.random.normal(jax.random.PRNGKey(0), (64, 5))
    pi = distrax.Categorical(logits=logits)
    for seed in range(3):
        key = jax.random.PRNGKey(seed)
        action, log_prob = ppo.sample_categorical(pi, key)
        expected = pi.sample(seed=key)
        chex.assert_trees_all_equal(action, expected.astype(jnp.int32))
        chex.assert_trees_all_equal(log_prob, pi.log_prob(expected))
