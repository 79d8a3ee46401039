import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from purerl.agents import r2d2
from purerl.core import Transition

from tests.helpers import CARTPOLE_SPEC, replay_sample

CONFIG = r2d2.R2D2Config(
    hidden_sizes=(16, 16), sequence_length=6, burn_in=2, lr_schedule="constant", batch_size=4
)


def windows(key, agent, state, n=4, length=6):
    """Random CartPole-like windows `[N, L]` with the carries an actor would have held."""
    k1, k2, k3 = jax.random.split(key, 3)
    obs = jax.random.normal(k1, (n, length, 4))
    carry = jax.tree.map(
        lambda x: jax.random.normal(k3, (n, length) + x.shape[1:]), agent.initial_carry(1)
    )
    items = Transition(
        obs=obs,
        action=jax.random.randint(k2, (n, length), 0, 2),
        reward=jnp.ones((n, length)),
        terminated=jnp.zeros((n, length), bool).at[0, 3].set(True),
        truncated=jnp.zeros((n, length), bool).at[1, 4].set(True),
        next_obs=jnp.roll(obs, -1, axis=1),
        extras={},
        carry=carry,
    )
    return replay_sample(items)


def test_act_carries_the_recurrent_state():
    agent = r2d2.make(CONFIG)
    state = agent.init(jax.random.PRNGKey(0), CARTPOLE_SPEC)
    carry = agent.initial_carry(5)
    obs = jnp.ones((5, 4))
    action, new, _ = jax.jit(agent.act)(state, carry, obs, jax.random.PRNGKey(1))
    chex.assert_shape(action, (5,))
    assert not np.allclose(new[1], carry[1])  # The LSTM's state moved.
    greedy, again, _ = agent.act(state, carry, obs, jax.random.PRNGKey(1), deterministic=True)
    chex.assert_trees_all_close(again, new)


def test_learn_uses_the_stored_start_carry_and_not_the_burn_in_rewards():
    agent = r2d2.make(CONFIG)
    state = agent.init(jax.random.PRNGKey(0), CARTPOLE_SPEC)
    learn = jax.jit(agent.learn)
    sample = windows(jax.random.PRNGKey(1), agent, state)
    new, metrics = learn(state, sample, jax.random.PRNGKey(2))
    assert int(new.steps) == 1 and metrics["priorities"].shape == (4,)
    assert all(np.isfinite(v).all() for v in jax.tree.leaves(metrics))

    def loss_with(items):
        return float(learn(state, sample._replace(items=items), jax.random.PRNGKey(2))[1]["loss"])

    items = sample.items
    # Rewards inside the burn-in are never learned from; later ones are.
    assert loss_with(items._replace(reward=items.reward.at[:, :2].set(9.0))) == pytest.approx(
        float(metrics["loss"])
    )
    assert loss_with(items._replace(reward=items.reward.at[:, 3].set(9.0))) != pytest.approx(
        float(metrics["loss"])
    )
    # Each window starts from the carry stored with its first step, and only that one.
    moved = jax.tree.map(lambda c: c.at[:, 0].add(1.0), items.carry)
    assert loss_with(items._replace(carry=moved)) != pytest.approx(float(metrics["loss"]))
    later = jax.tree.map(lambda c: c.at[:, 1:].add(1.0), items.carry)
    assert loss_with(items._replace(carry=later)) == pytest.approx(float(metrics["loss"]))


def test_options_without_a_recurrent_variant_are_refused():
    for bad, match in (
        (dict(torso="mlp"), "must be recurrent"),
        (dict(distribution="categorical"), "--distribution"),
        (dict(noisy=True), "--noisy"),
        (dict(n_step=3), "--n-step"),
        (dict(burn_in=6, sequence_length=6), "burn_in"),
    ):
        with pytest.raises(ValueError, match=match):
            r2d2.R2D2Config(**bad)
