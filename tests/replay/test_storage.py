"""Replay storage keeps each observation once and gives every transition back exactly."""

import jax
import jax.numpy as jnp
import numpy as np
from purerl.core import Transition
from purerl.replay import prioritized_replay, uniform_replay
from purerl.replay.storage import bytes_per_slot, store_gather, store_init, store_write


def env_stream(key, steps, envs, p_end=0.15):
    """Rollouts of auto-resetting envs: the next observation is the following one, except
    where an episode ended (then the ended episode's own final observation)."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    obs = np.asarray(jax.random.normal(k1, (steps + 1, envs, 3)))
    ended = np.asarray(jax.random.uniform(k2, (steps, envs)) < p_end)
    truncated = ended & np.asarray(jax.random.uniform(k3, (steps, envs)) < 0.5)
    terminated = ended & ~truncated
    final = np.asarray(jax.random.normal(k4, (steps, envs, 3))) + 100.0
    next_obs = np.where(ended[..., None], final, obs[1:])
    return Transition(
        obs=jnp.asarray(obs[:-1]),
        action=jnp.zeros((steps, envs), jnp.int32),
        reward=jnp.arange(steps * envs, dtype=jnp.float32).reshape(steps, envs),
        terminated=jnp.asarray(terminated),
        truncated=jnp.asarray(truncated),
        next_obs=jnp.asarray(next_obs),
        extras={},
    ), obs[-1]


def rollouts(num, steps=4, envs=3):
    """`num` consecutive rollouts of the same envs (each starts where the last ended)."""
    whole, _ = env_stream(jax.random.PRNGKey(0), num * steps, envs)
    return [jax.tree.map(lambda x, i=i: x[i * steps : (i + 1) * steps], whole) for i in range(num)]


def test_every_transition_comes_back_with_its_next_observation_across_wraparound():
    parts = rollouts(7)  # 7 rollouts of 12 transitions into 36 slots: wraps twice.
    storage = store_init(parts[0], capacity=36, min_size=1, final_capacity=32)
    index = jnp.zeros((), jnp.int32)
    write = jax.jit(store_write)
    for part in parts:
        storage, num = write(storage, part, index)
        index = (index + num) % 36
    items, valid = store_gather(storage, jnp.arange(36))
    assert bool(valid.all())
    # The buffer holds the last three rollouts, the oldest starting at slot `index`.
    held = jax.tree.map(
        lambda *x: jnp.concatenate([y.reshape((-1,) + y.shape[2:]) for y in x]), *parts[-3:]
    )
    order = (np.arange(36) - int(index)) % 36  # Slot -> position in the last three rollouts.
    expected = jax.tree.map(lambda x: np.asarray(x)[order], held)
    np.testing.assert_array_equal(items.reward, expected.reward)
    np.testing.assert_array_equal(items.obs, expected.obs)
    # A terminated step's next obs is never used; the newest row's arrives with the next add.
    used = ~np.asarray(expected.terminated) & (order < 33)
    np.testing.assert_array_equal(np.asarray(items.next_obs)[used], expected.next_obs[used])


def test_an_evicted_final_observation_comes_back_with_weight_zero():
    part, _ = env_stream(jax.random.PRNGKey(3), 4, 3, p_end=0.0)
    truncated = np.zeros((4, 3), bool)
    truncated[0, 0] = truncated[2, 1] = True  # Two truncations, a table of one.
    part = part._replace(truncated=jnp.asarray(truncated))
    buffer = uniform_replay(capacity=24, batch_size=8, final_capacity=1)
    state = buffer.add(buffer.init(part), part)
    storage = state.storage
    items, valid = store_gather(storage, jnp.arange(12))
    np.testing.assert_array_equal(np.flatnonzero(~np.asarray(valid)), [0])  # Slot t=0, b=0.
    np.testing.assert_array_equal(items.next_obs[7], part.next_obs[2, 1])  # Kept: the newer.
    sample = buffer.sample(state, jax.random.PRNGKey(0))
    assert np.all(np.asarray(sample.indices) < 9)  # Never the newest row (slots 9-11).
    np.testing.assert_array_equal(sample.weights, np.asarray(valid)[np.asarray(sample.indices)])


def test_observations_are_stored_once():
    frames = Transition(
        obs=jnp.zeros((1, 8, 84, 84, 4), jnp.uint8),
        action=jnp.zeros((1, 8), jnp.int32),
        reward=jnp.zeros((1, 8)),
        terminated=jnp.zeros((1, 8), bool),
        truncated=jnp.zeros((1, 8), bool),
        next_obs=jnp.zeros((1, 8, 84, 84, 4), jnp.uint8),
        extras={},
    )
    frame = 84 * 84 * 4
    per_slot = bytes_per_slot(store_init(frames, capacity=8192, min_size=1))
    # One frame, a sixteenth of one for the truncation table, 8 newest next frames shared
    # by 8192 slots (28 bytes each) and 14 bytes of action, reward, flags and pointer.
    assert frame < per_slot < frame * (1 + 1 / 16) + 28 + 14 + 1
    plain = bytes_per_slot(store_init({"obs": frames.obs, "next_obs": frames.next_obs}, 8192, 1))
    assert plain == 2 * frame


def test_prioritised_replay_gives_the_same_transitions():
    parts = rollouts(3)
    buffer = prioritized_replay(capacity=48, batch_size=12, final_capacity=36)
    state = buffer.init(parts[0])
    for part in parts:
        state = buffer.add(state, part)
    sample = buffer.sample(state, jax.random.PRNGKey(1))
    flat = jax.tree.map(
        lambda *x: jnp.concatenate([y.reshape((-1,) + y.shape[2:]) for y in x]), *parts
    )
    idx = np.asarray(sample.indices)
    assert np.all(idx < 33)  # The newest row (33-35) waits for its next observation.
    np.testing.assert_array_equal(sample.items.reward, np.asarray(flat.reward)[idx])
    used = ~np.asarray(flat.terminated)[idx]
    np.testing.assert_array_equal(
        np.asarray(sample.items.next_obs)[used], np.asarray(flat.next_obs)[idx][used]
    )
