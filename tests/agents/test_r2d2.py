import dataclasses

import chex
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from purerl.agents import r2d2
from purerl.core import EnvSpec, Transition, legal_actions

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


# Observations of 4 features followed by the legal-action mask of 3 actions.
MASKED_SPEC = EnvSpec(
    gymnasium.spaces.Box(-np.inf, np.inf, (7,), np.float32),
    gymnasium.spaces.Discrete(3),
    action_mask=True,
)


def one_legal(key, shape):
    """Masks `shape + [3]` with one legal action each, drawn at random."""
    return jax.nn.one_hot(jax.random.randint(key, shape, 0, 3), 3)


@pytest.mark.parametrize("epsilon", [0.0, 1.0])
def test_masked_act_picks_legal_actions_only(epsilon):
    features = jax.random.normal(jax.random.PRNGKey(1), (64, 4))
    obs = jnp.concatenate([features, one_legal(jax.random.PRNGKey(2), (64,))], axis=1)
    legal = np.asarray(legal_actions(obs, 3))
    config = dataclasses.replace(CONFIG, epsilon_start=epsilon, epsilon_end=epsilon)
    agent = r2d2.make(config)
    illegal = {}
    for spec in (MASKED_SPEC, MASKED_SPEC._replace(action_mask=False)):
        state = agent.init(jax.random.PRNGKey(0), spec)
        for deterministic in (False, True):
            action, _, _ = agent.act(
                state, agent.initial_carry(64), obs, jax.random.PRNGKey(3), deterministic
            )
            picked = legal[np.arange(64), np.asarray(action)]
            illegal[spec.action_mask, deterministic] = int((~picked).sum())
    assert illegal[True, False] == illegal[True, True] == 0
    # Without the mask the same agent picks illegal actions (2 of 3 are, in each row).
    assert illegal[False, False] > 0 and illegal[False, True] > 0


@pytest.mark.parametrize("double_q", [True, False])
def test_masked_learn_bootstraps_from_the_best_legal_next_action(double_q):
    # No burn-in and no episode end: by hand, step t's Q-values come from the carry after
    # the steps before it, and its next observation's from the carry after step t.
    config = dataclasses.replace(CONFIG, burn_in=0, loss="mse", gamma=0.5, double_q=double_q)
    agent = r2d2.make(config)
    state = agent.init(jax.random.PRNGKey(0), MASKED_SPEC)
    n, length = 8, 6
    items = windows(jax.random.PRNGKey(1), agent, state, n, length).items
    legal_next = one_legal(jax.random.PRNGKey(2), (n, length))
    items = items._replace(
        obs=jnp.concatenate([items.obs, jnp.ones((n, length, 3))], axis=-1),
        action=jax.random.randint(jax.random.PRNGKey(3), (n, length), 0, 3),
        next_obs=jnp.concatenate([items.next_obs, legal_next], axis=-1),
        terminated=jnp.zeros((n, length), bool),
        truncated=jnp.zeros((n, length), bool),
    )
    _, metrics = jax.jit(agent.learn)(state, replay_sample(items), jax.random.PRNGKey(4))

    carry = jax.tree.map(lambda c: c[:, 0], items.carry)
    q_tm1, q_t = [], []
    for t in range(length):  # The target network is the online one at the start.
        carry, q = state.network.apply(state.params, carry, items.obs[:, t])
        q_tm1.append(q[jnp.arange(n), items.action[:, t]])
        q_t.append(state.network.apply(state.params, carry, items.next_obs[:, t])[1])
    q_tm1, q_t = jnp.stack(q_tm1, axis=1), jnp.stack(q_t, axis=1)  # [N, L], [N, L, 3]
    # target = r + gamma * q_t[the legal action]; the max over every action would differ.
    legal_target = items.reward + 0.5 * jnp.sum(q_t * legal_next, axis=-1)
    np.testing.assert_allclose(
        metrics["td_abs"], jnp.mean(jnp.abs(legal_target - q_tm1)), rtol=1e-5
    )
    any_target = items.reward + 0.5 * jnp.max(q_t, axis=-1)
    assert not np.allclose(any_target, legal_target)


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
