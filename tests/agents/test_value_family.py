"""The value-based family: n-step targets from sequence replay, C51's and QR-DQN's losses,
noisy layers, and each named variant's wiring."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from purerl.agents import dqn
from purerl.core import Transition
from purerl.networks import NoisyDense
from purerl.replay import uniform_replay
from purerl.replay.storage import store_gather_sequence, store_init, store_write

from tests.helpers import CARTPOLE_SPEC, replay_sample, transitions

GAMMA = 0.5


def test_n_step_targets_by_hand():
    reward = jnp.array([[1.0, 2.0, 3.0]] * 4)
    terminated = jnp.array([[0, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0]], bool)
    truncated = jnp.array([[0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0, 1]], bool)
    returns, discounts, last = dqn.n_step_targets(reward, terminated, truncated, GAMMA)
    # No end: 1 + .5 * 2 + .25 * 3, bootstrapped with .5^3 from step 2.
    # Terminated at step 1: 1 + .5 * 2, no bootstrap. Truncated at step 0: 1, bootstrap .5.
    # Terminated at step 0 (a later truncation belongs to the next episode): 1, no bootstrap.
    np.testing.assert_allclose(returns, [2.75, 2.0, 1.0, 1.0])
    np.testing.assert_allclose(discounts, [0.125, 0.0, 0.5, 0.0])
    np.testing.assert_array_equal(last, [2, 1, 0, 0])


def _one_env_trajectory():
    """Eight steps of one env: obs t is t; an episode terminates at step 2, the next is cut
    by a time limit at step 5 (its final observation 99); rewards t + 1."""
    t = jnp.arange(8, dtype=jnp.float32)
    terminated = t == 2
    truncated = t == 5
    next_obs = jnp.where(truncated, 99.0, t + 1)
    traj = Transition(
        obs=t[:, None, None],
        action=jnp.zeros((8, 1), jnp.int32),
        reward=(t + 1)[:, None],
        terminated=terminated[:, None],
        truncated=truncated[:, None],
        next_obs=next_obs[:, None, None],
        extras={},
    )
    return traj


def test_n_step_windows_from_replay_cross_an_episode_end_and_a_truncation():
    traj = _one_env_trajectory()
    storage = store_init(traj, capacity=16, min_size=1, sequence_length=3)
    storage, _ = store_write(storage, traj, jnp.asarray(0))
    windows, valid = store_gather_sequence(storage, jnp.arange(5))
    assert bool(jnp.all(valid))
    chex.assert_shape(windows.obs, (5, 3, 1))
    returns, discounts, last = dqn.n_step_targets(
        windows.reward, windows.terminated, windows.truncated, GAMMA
    )
    bootstrap = jnp.take_along_axis(windows.next_obs[..., 0], last[:, None], axis=1)[:, 0]
    g = GAMMA
    np.testing.assert_allclose(
        returns,
        [
            1 + g * 2 + g**2 * 3,  # Steps 0-2, terminated at 2.
            2 + g * 3,  # Steps 1-2.
            3.0,  # Step 2 alone.
            4 + g * 5 + g**2 * 6,  # Steps 3-5, truncated at 5.
            5 + g * 6,  # Steps 4-5.
        ],
        rtol=1e-6,
    )
    np.testing.assert_allclose(discounts, [0, 0, 0, g**3, g**2], rtol=1e-6)
    # A truncated window bootstraps from the episode's final observation.
    np.testing.assert_allclose(bootstrap[3:], [99.0, 99.0])


def test_sequence_replay_samples_only_complete_windows():
    traj = _one_env_trajectory()
    replay = uniform_replay(16, 4, 4, sequence_length=3)
    state = replay.add(replay.init(traj), traj)
    sample = replay.sample(state, jax.random.PRNGKey(0))
    chex.assert_shape(sample.items.reward, (4, 3))
    sample = jax.vmap(replay.sample, in_axes=(None, 0))(
        state, jax.random.split(jax.random.PRNGKey(0), 32)
    )
    sample = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), sample)
    # 8 stored, the newest 3 wait for the rest of their windows: starts 0..4 only.
    assert set(np.asarray(sample.indices).tolist()) == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(sample.items.obs[:, 0, 0], sample.indices)


def test_c51_loss_by_hand():
    atoms = jnp.array([0.0, 1.0, 2.0])
    online = jnp.log(jnp.array([0.2, 0.3, 0.5]))
    logits_tm1 = jnp.stack([online, online])[None]  # [1, A=2, K=3]
    # The target net puts action 0's mass on atom 0 and action 1's on atom 1: greedy is 1.
    logits_t = jnp.array([[[0.0, -1e9, -1e9], [-1e9, 0.0, -1e9]]])
    a, r = jnp.array([0]), jnp.array([0.5])
    # r + 1 * 1 = 1.5 projects half onto atom 1, half onto atom 2.
    loss = dqn.categorical_loss(logits_tm1, a, r, jnp.array([1.0]), logits_t, atoms)
    np.testing.assert_allclose(loss, [-(0.5 * np.log(0.3) + 0.5 * np.log(0.5))], rtol=1e-5)
    # Terminal: the target is 0.5 itself, half on atom 0, half on atom 1.
    loss = dqn.categorical_loss(logits_tm1, a, r, jnp.array([0.0]), logits_t, atoms)
    np.testing.assert_allclose(loss, [-(0.5 * np.log(0.2) + 0.5 * np.log(0.3))], rtol=1e-5)
    # Double: the online selector prefers action 0, whose target mass sits on atom 0:
    # 0.5 + 0 lands half on atom 0, half on atom 1.
    selector = jnp.array([[1.0, 0.0]])
    loss = dqn.categorical_loss(logits_tm1, a, r, jnp.array([1.0]), logits_t, atoms, selector)
    np.testing.assert_allclose(loss, [-(0.5 * np.log(0.2) + 0.5 * np.log(0.3))], rtol=1e-5)


def test_c51_loss_and_projection_equal_rlax_dense_ones():
    import rlax

    atoms = jnp.linspace(-10.0, 10.0, 51)
    k = jax.random.split(jax.random.PRNGKey(3), 6)
    logits_tm1, logits_t = (jax.random.normal(x, (64, 3, 51)) for x in k[:2])
    a = jax.random.randint(k[2], (64,), 0, 3)
    # Returns beyond the support on both sides, and some landing exactly on atoms.
    r = jnp.concatenate([jax.random.uniform(k[3], (60,), minval=-30, maxval=30), atoms[:4]])
    discount = jnp.where(jnp.arange(64) % 5 == 0, 0.0, 0.97)
    selector = jax.random.normal(k[4], (64, 3))
    for sel in (None, selector):
        mine = dqn.categorical_loss(logits_tm1, a, r, discount, logits_t, atoms, sel)
        if sel is None:
            theirs = jax.vmap(rlax.categorical_q_learning, in_axes=(None, 0, 0, 0, 0, None, 0))(
                atoms, logits_tm1, a, r, discount, atoms, logits_t
            )
        else:
            theirs = jax.vmap(
                rlax.categorical_double_q_learning, in_axes=(None, 0, 0, 0, 0, None, 0, 0)
            )(atoms, logits_tm1, a, r, discount, atoms, logits_t, sel)
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)
    probs = jax.nn.softmax(logits_t[:, 0], axis=-1)
    values = r[:, None] + discount[:, None] * atoms
    dense = jax.vmap(rlax.categorical_l2_project, in_axes=(0, 0, None))(values, probs, atoms)
    np.testing.assert_allclose(dqn.project_onto_atoms(probs, values, atoms), dense, atol=1e-5)


def test_quantile_huber_loss_by_hand():
    np.testing.assert_allclose(dqn.quantile_midpoints(2), [0.25, 0.75])
    quantiles_tm1 = jnp.array([[[0.0, 3.0], [5.0, 5.0]]])  # [1, A=2, N=2]
    quantiles_t = jnp.zeros((1, 2, 2))
    a, r = jnp.array([0]), jnp.array([1.0])
    # Targets 1 + 0 = 1 (both). Quantile 0 (tau .25) lies 1 below: weight .25, huber(1) .5.
    # Quantile 1 (tau .75) lies 2 above: weight |.75 - 1| = .25, huber(2) = 1.5.
    loss = dqn.quantile_loss(quantiles_tm1, a, r, jnp.array([0.0]), quantiles_t, None, 1.0)
    np.testing.assert_allclose(loss, [0.25 * 0.5 + 0.25 * 1.5], rtol=1e-6)
    # Without the Huber part (kappa 0): .25 * 1 + .25 * 2.
    loss = dqn.quantile_loss(quantiles_tm1, a, r, jnp.array([0.0]), quantiles_t, None, 0.0)
    np.testing.assert_allclose(loss, [0.75], rtol=1e-6)
    # Bootstrapping: the greedy next action's quantiles [2, 4] (mean 3 > 1), discounted .5,
    # give targets [2, 3].
    quantiles_t = jnp.array([[[1.0, 1.0], [2.0, 4.0]]])
    loss = dqn.quantile_loss(quantiles_tm1, a, r, jnp.array([0.5]), quantiles_t, None, 0.0)
    # Quantile 0 (0; tau .25) under both: .25 * (2 + 3) / 2. Quantile 1 (3; tau .75):
    # target 2 below, weight .25 * 1; target 3 equal, 0. Mean over targets: .125.
    np.testing.assert_allclose(loss, [0.625 + 0.125], rtol=1e-6)


def test_noisy_layer_resamples_per_key_and_is_deterministic_without_one():
    layer = NoisyDense(3)
    x = jnp.ones((2, 5))
    params = layer.init(jax.random.PRNGKey(0), x)
    mean = layer.apply(params, x)
    p = params["params"]
    np.testing.assert_allclose(mean, x @ p["mu_kernel"] + p["mu_bias"], rtol=1e-6)
    np.testing.assert_allclose(layer.apply(params, x), mean)  # No noise stream: the means.
    one = layer.apply(params, x, rngs={"noise": jax.random.PRNGKey(1)})
    again = layer.apply(params, x, rngs={"noise": jax.random.PRNGKey(1)})
    other = layer.apply(params, x, rngs={"noise": jax.random.PRNGKey(2)})
    np.testing.assert_array_equal(one, again)
    assert not np.allclose(one, mean) and not np.allclose(one, other)
    # Factorised noise: with unit sigmas and no bias noise, the outputs for the unit inputs
    # are the kernel's noise, the outer product f(eps_in) f(eps_out)^T: rank one.
    unit = {
        "params": {
            **p,
            "sigma_kernel": jnp.ones_like(p["sigma_kernel"]),
            "sigma_bias": jnp.zeros_like(p["sigma_bias"]),
        }
    }
    eye = jnp.eye(5)
    noise = layer.apply(unit, eye, rngs={"noise": jax.random.PRNGKey(1)}) - layer.apply(unit, eye)
    assert np.linalg.matrix_rank(np.asarray(noise), tol=1e-5) == 1
    # Zero sigmas: no noise at all.
    still = jax.tree.map(jnp.zeros_like, unit)
    still["params"]["mu_kernel"], still["params"]["mu_bias"] = p["mu_kernel"], p["mu_bias"]
    np.testing.assert_allclose(layer.apply(still, x, rngs={"noise": jax.random.PRNGKey(1)}), mean)


def test_rainbow_explores_by_noise_and_evaluates_deterministically():
    agent = dqn.make(dqn.RainbowConfig(epsilon_start=0.0, epsilon_end=0.0), num_updates=1000)
    state = agent.init(jax.random.PRNGKey(0), CARTPOLE_SPEC)
    assert "sigma_kernel" in str(jax.tree_util.tree_structure(state.params))
    obs = jax.random.normal(jax.random.PRNGKey(1), (512, 4))
    greedy = [
        agent.act(state, (), obs, jax.random.PRNGKey(k), deterministic=True)[0] for k in range(3)
    ]
    np.testing.assert_array_equal(greedy[0], greedy[1])
    np.testing.assert_array_equal(greedy[0], greedy[2])
    noisy = [agent.act(state, (), obs, jax.random.PRNGKey(k))[0] for k in range(2)]
    assert bool(jnp.any(noisy[0] != noisy[1]))  # With epsilon 0, only the noise differs.


@pytest.mark.parametrize(
    "config",
    [
        dqn.C51Config(),
        dqn.QRDQNConfig(),
        dqn.RainbowConfig(),
        dqn.DQNConfig(n_step=3, double_q=True, dueling=True),
    ],
    ids=["c51", "qrdqn", "rainbow", "dqn-n3"],
)
def test_each_variant_learns_from_windows_and_reports_priorities(config):
    agent = dqn.make(config, num_updates=1000)
    state = agent.init(jax.random.PRNGKey(0), CARTPOLE_SPEC)
    windows = transitions(jax.random.PRNGKey(1), (32, config.n_step))
    new, metrics = jax.jit(agent.learn)(state, replay_sample(windows), jax.random.PRNGKey(2))
    chex.assert_shape(metrics["priorities"], (32,))
    assert bool(jnp.all(metrics["priorities"] >= 0))
    for leaf in jax.tree.leaves((new.params, metrics)):
        assert np.all(np.isfinite(leaf))
    with pytest.raises(AssertionError):
        chex.assert_trees_all_close(new.params, state.params)
    q = new.network.apply(new.params, windows.obs[:, 0])
    expected = (32, 2) if config.distribution == "none" else (32, 2, config.num_atoms)
    chex.assert_shape(q, expected)


def test_value_family_config_errors_are_clear():
    with pytest.raises(ValueError, match="distribution must be one of"):
        dqn.DQNConfig(distribution="gaussian")
    with pytest.raises(ValueError, match="n_step must be a positive integer"):
        dqn.DQNConfig(n_step=0)
    with pytest.raises(ValueError, match="v_min < v_max"):
        dqn.C51Config(v_min=1.0, v_max=-1.0)
    with pytest.raises(ValueError, match="num_atoms must be at least 2"):
        dqn.QRDQNConfig(num_atoms=1)
