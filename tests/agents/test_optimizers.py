import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from purerl.agents.optimizers import (
    OPTIMIZERS,
    SCHEDULES,
    apply_gradients,
    make_optimizer,
    make_schedule,
)

from tests.helpers import AXIS, data_parallel


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_name_builds_and_steps(name):
    tx = make_optimizer(name, 1e-2, max_grad_norm=1.0)
    params = {"w": jnp.ones((3,))}
    state = tx.init(params)
    updates, _ = tx.update({"w": jnp.ones((3,))}, state, params)
    assert np.all(np.isfinite(updates["w"]))


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_schedule_name_builds(name):
    lr = make_schedule(name, 1.0, total_steps=100)
    values = [float(lr(t)) if callable(lr) else lr for t in (0, 50, 100)]
    assert all(np.isfinite(values)) and max(values) <= 1.0 + 1e-6


def test_schedules_by_hand():
    assert make_schedule("constant", 0.3, None) == 0.3
    linear = make_schedule("linear", 1.0, 10)
    np.testing.assert_allclose([linear(0), linear(5), linear(10)], [1.0, 0.5, 0.0], atol=1e-6)
    warm = make_schedule("warmup_cosine(warmup_steps=4)", 1.0, 20)
    np.testing.assert_allclose([warm(0), warm(2), warm(4)], [0.0, 0.5, 1.0], atol=1e-6)
    decay = make_schedule("exponential(decay_rate=0.5)", 1.0, 10)
    np.testing.assert_allclose(decay(10), 0.5, rtol=1e-6)


def test_arguments_reach_the_optimizer_and_clipping_comes_first():
    params = {"w": jnp.zeros(())}
    tx = make_optimizer("sgd(momentum=0.5)", 1.0, max_grad_norm=0.1)
    state = tx.init(params)
    g = {"w": jnp.asarray(10.0)}
    u1, state = tx.update(g, state, params)
    u2, _ = tx.update(g, state, params)
    # Clipped to 0.1, then SGD with momentum 0.5: steps -0.1, then -(0.1 + 0.5 * 0.1).
    np.testing.assert_allclose([u1["w"], u2["w"]], [-0.1, -0.15], rtol=1e-6)
    expected = optax.adamw(1e-3, weight_decay=0.1)
    tx = make_optimizer("adamw(weight_decay=0.1)", 1e-3)
    p = {"w": jnp.ones((2,))}
    a, _ = tx.update(p, tx.init(p), p)
    b, _ = expected.update(p, expected.init(p), p)
    np.testing.assert_allclose(a["w"], b["w"])


def test_bad_names_and_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown optimizer 'adamm'; choose one of"):
        make_optimizer("adamm", 1e-3)
    with pytest.raises(ValueError, match="takes no argument 'betas'"):
        make_optimizer("adam(betas=1)", 1e-3)
    with pytest.raises(ValueError, match="Unknown learning-rate schedule 'step'"):
        make_optimizer("adam", 1e-3, "step", total_steps=10)
    with pytest.raises(ValueError, match="Cannot read the optimizer"):
        make_optimizer("adam(", 1e-3)
    with pytest.raises(ValueError, match="needs the run's number of gradient steps"):
        make_optimizer("adam", 1e-3, "cosine")


def test_optimizer_trains_a_tiny_problem():
    tx = make_optimizer("adam", 0.1, "cosine", total_steps=200)
    params = jnp.asarray(3.0)
    state = tx.init(params)
    grad = jax.grad(lambda p: (p - 1.0) ** 2)
    for _ in range(200):
        updates, state = tx.update(grad(params), state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params, 1.0, atol=1e-2)


def test_learning_rates_must_be_positive():
    from purerl.agents.dqn import DQNConfig
    from purerl.agents.ppo import PPOConfig
    from purerl.agents.sac import SACConfig

    with pytest.raises(ValueError, match="DQNConfig.learning_rate must be a positive number"):
        DQNConfig(learning_rate=-1)
    with pytest.raises(ValueError, match="PPOConfig.learning_rate must be a positive"):
        PPOConfig(learning_rate=0.0)
    with pytest.raises(ValueError, match="SACConfig.actor_learning_rate must be a positive"):
        SACConfig(actor_learning_rate=float("nan"))


def test_apply_gradients_steps_on_the_gradients_averaged_over_devices():
    tx = optax.sgd(0.5)
    params = {"w": jnp.array([1.0, 2.0])}
    grads = jnp.array([[2.0, 0.0], [4.0, 2.0]])  # One row per device.

    def step(params, grads, key):
        new, _ = apply_gradients({"w": grads[0]}, tx.init(params), params, tx, AXIS)
        return new, key

    new, _ = data_parallel(step, 2, batch_axis=0)(params, grads, jax.random.PRNGKey(0))
    # The mean gradient is [3, 1]: w - 0.5 * [3, 1].
    np.testing.assert_allclose(new["w"], [-0.5, 1.5])
    alone, _ = apply_gradients({"w": grads[0]}, tx.init(params), params, tx)
    np.testing.assert_allclose(alone["w"], [0.0, 2.0])  # w - 0.5 * [2, 0].
