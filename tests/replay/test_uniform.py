import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from purerl.replay import uniform_replay


def rollout(start: int, num_envs: int = 3):
    """A `[T=1, B]` rollout of items numbered `start, start + 1, ...`."""
    values = jnp.arange(start, start + num_envs)[None]
    return {"obs": jnp.repeat(values[..., None], 3, axis=-1).astype(jnp.float32), "action": values}


def test_add_fills_then_wraps_around_overwriting_the_oldest():
    buffer = uniform_replay(capacity=6, batch_size=2)
    state = buffer.add(buffer.init(rollout(0)), rollout(0))
    assert int(state.size) == 3 and int(state.index) == 3
    state = buffer.add(buffer.add(state, rollout(3)), rollout(6))  # 6, 7, 8 wrap to 0, 1, 2.
    assert int(state.size) == 6 and int(state.index) == 3
    np.testing.assert_array_equal(state.storage["action"], [6, 7, 8, 3, 4, 5])
    np.testing.assert_array_equal(state.storage["obs"][:, 0], [6, 7, 8, 3, 4, 5])


def test_can_sample_waits_for_min_size():
    buffer = uniform_replay(capacity=12, batch_size=2, min_size=4)
    state = buffer.add(buffer.init(rollout(0, 2)), rollout(0, 2))
    assert not bool(buffer.can_sample(state))
    state = buffer.add(state, rollout(2, 2))
    assert bool(buffer.can_sample(state))


def test_sample_draws_only_written_items_with_batch_shape_and_unit_weights():
    buffer = uniform_replay(capacity=99, batch_size=64)
    state = buffer.add(buffer.init(rollout(0)), rollout(10))
    batch = jax.jit(buffer.sample)(state, jax.random.PRNGKey(0))
    chex.assert_shape(batch.items["obs"], (64, 3))
    chex.assert_shape([batch.indices, batch.weights], (64,))
    assert batch.items["action"].dtype == jnp.int32
    assert set(np.asarray(batch.items["action"]).tolist()) == {10, 11, 12}
    np.testing.assert_array_equal(batch.items["action"], batch.indices + 10)
    np.testing.assert_array_equal(batch.weights, 1.0)


def test_sample_is_uniform_over_the_stored_items_after_wrapping():
    buffer = uniform_replay(capacity=9, batch_size=9)
    state = buffer.init(rollout(0))
    for start in range(0, 15, 3):  # 15 items into 9 slots: 6 to 14 remain.
        state = buffer.add(state, rollout(start))
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    actions = jax.vmap(lambda k: buffer.sample(state, k).items["action"])(keys)
    counts = np.bincount(np.asarray(actions).ravel(), minlength=15)
    assert counts[:6].sum() == 0  # Overwritten.
    expected = actions.size / 9
    np.testing.assert_allclose(counts[6:], expected, rtol=0.1)


def test_same_key_same_sample_different_key_different_sample():
    buffer = uniform_replay(capacity=99, batch_size=32)
    state = buffer.init(rollout(0))
    for start in range(0, 99, 3):
        state = buffer.add(state, rollout(start))
    a = buffer.sample(state, jax.random.PRNGKey(1)).items["action"]
    b = buffer.sample(state, jax.random.PRNGKey(1)).items["action"]
    c = buffer.sample(state, jax.random.PRNGKey(2)).items["action"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_jitted_add_with_donated_state_does_not_retrace():
    buffer = uniform_replay(capacity=6, batch_size=2)

    @functools.partial(jax.jit, donate_argnums=0)
    @chex.assert_max_traces(n=1)
    def add(state, new):
        return buffer.add(state, new)

    state = buffer.init(rollout(0))
    for start in range(0, 12, 3):
        state = add(state, rollout(start))
    np.testing.assert_array_equal(state.storage["action"], [6, 7, 8, 9, 10, 11])


def test_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="larger than its capacity"):
        uniform_replay(capacity=10, batch_size=11)
    with pytest.raises(ValueError, match="capacity must be a positive integer"):
        uniform_replay(capacity=0, batch_size=1)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        uniform_replay(capacity=10, batch_size=0)
    with pytest.raises(ValueError, match="min_size"):
        uniform_replay(capacity=10, batch_size=2, min_size=11)
