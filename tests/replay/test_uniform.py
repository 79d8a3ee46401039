import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from purerl.replay import make_uniform


def item(value: float = 0.0):
    return {"obs": jnp.full((3,), value, jnp.float32), "action": jnp.asarray(0, jnp.int32)}


def items(start: int, num: int):
    values = jnp.arange(start, start + num, dtype=jnp.float32)
    return {
        "obs": jnp.repeat(values[:, None], 3, axis=1),
        "action": jnp.arange(start, start + num, dtype=jnp.int32),
    }


def test_add_fills_then_wraps_around_overwriting_the_oldest():
    buffer = make_uniform(capacity=5, batch_size=2)
    state = buffer.init(item())
    state = buffer.add(state, items(0, 3))
    assert int(state.size) == 3 and int(state.index) == 3
    state = buffer.add(state, items(3, 4))  # 3, 4 land in slots 3, 4; 5, 6 wrap to 0, 1.
    assert int(state.size) == 5 and int(state.index) == 2
    np.testing.assert_array_equal(state.storage["action"], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(state.storage["obs"][:, 0], [5, 6, 2, 3, 4])


def test_can_sample_waits_for_min_size():
    buffer = make_uniform(capacity=10, batch_size=2, min_size=4)
    state = buffer.init(item())
    state = buffer.add(state, items(0, 3))
    assert not bool(buffer.can_sample(state))
    state = buffer.add(state, items(3, 1))
    assert bool(buffer.can_sample(state))


def test_sample_draws_only_written_items_with_batch_shape():
    buffer = make_uniform(capacity=100, batch_size=64)
    state = buffer.add(buffer.init(item()), items(10, 7))
    batch = jax.jit(buffer.sample)(state, jax.random.PRNGKey(0))
    chex.assert_shape(batch["obs"], (64, 3))
    assert batch["action"].dtype == jnp.int32
    assert set(np.asarray(batch["action"]).tolist()) <= set(range(10, 17))
    np.testing.assert_array_equal(batch["obs"][:, 0], batch["action"].astype(np.float32))


def test_same_key_same_sample_different_key_different_sample():
    buffer = make_uniform(capacity=100, batch_size=32)
    state = buffer.add(buffer.init(item()), items(0, 100))
    a = buffer.sample(state, jax.random.PRNGKey(1))["action"]
    b = buffer.sample(state, jax.random.PRNGKey(1))["action"]
    c = buffer.sample(state, jax.random.PRNGKey(2))["action"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_jitted_add_with_donated_state_does_not_retrace():
    buffer = make_uniform(capacity=8, batch_size=2)

    @functools.partial(jax.jit, donate_argnums=0)
    @chex.assert_max_traces(n=1)
    def add(state, new):
        return buffer.add(state, new)

    state = buffer.init(item())
    for start in range(0, 12, 3):
        state = add(state, items(start, 3))
    np.testing.assert_array_equal(state.storage["action"], [8, 9, 10, 11, 4, 5, 6, 7])


def test_bad_sizes_and_items_are_clear_errors():
    with pytest.raises(ValueError, match="larger than its capacity"):
        make_uniform(capacity=10, batch_size=11)
    with pytest.raises(ValueError, match="capacity must be positive"):
        make_uniform(capacity=0, batch_size=1)
    buffer = make_uniform(capacity=10, batch_size=2)
    state = buffer.init(item())
    with pytest.raises(ValueError, match="dtype"):
        buffer.add(
            state, {"obs": jnp.zeros((2, 3), jnp.float32), "action": jnp.zeros(2, jnp.float32)}
        )
    with pytest.raises(ValueError, match="shape"):
        buffer.add(
            state, {"obs": jnp.zeros((2, 4), jnp.float32), "action": jnp.zeros(2, jnp.int32)}
        )
    with pytest.raises(ValueError, match="do not fit"):
        buffer.add(state, items(0, 11))
