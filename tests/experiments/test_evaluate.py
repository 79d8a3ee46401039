"""Both loops' evaluations count episodes with one `tally`: each env copy's first episode,
held from its end on, or its totals so far at the step limit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from purerl import envs
from purerl.experiments.engine.evaluate import (
    evaluate,
    evaluate_host,
    no_episodes,
    stateless,
    tally,
)


@pytest.mark.parametrize("xp", [np, jnp])
def test_tally_holds_each_copy_from_its_first_episode_end(xp):
    episodes = no_episodes(xp.zeros(3, xp.float32), xp.zeros(3, xp.int32), xp)
    no = xp.asarray([False, False, False])
    # Copy 0 ends by a time limit, copy 1 by a terminal; copy 2 runs on.
    episodes = tally(
        episodes,
        xp.asarray([True, True, False]),
        xp.asarray([5.0, 2.0, 1.0], xp.float32),
        xp.asarray([5, 2, 1], xp.int32),
        xp.asarray([False, True, False]),
        xp.asarray([True, False, False]),
        xp,
    )
    # Copy 0 starts a new episode that ends at once; it is not counted.
    episodes = tally(
        episodes,
        xp.asarray([True, False, False]),
        xp.asarray([1.0, 1.0, 2.0], xp.float32),
        xp.asarray([1, 1, 2], xp.int32),
        xp.asarray([True, False, False]),
        no,
        xp,
    )
    np.testing.assert_array_equal(episodes.returns, [5.0, 2.0, 2.0])
    np.testing.assert_array_equal(episodes.lengths, [5, 2, 2])
    np.testing.assert_array_equal(episodes.finished, [True, True, False])
    np.testing.assert_array_equal(episodes.truncated, [True, False, False])
    assert episodes.returns.dtype == np.float32 and episodes.lengths.dtype == np.int32


def test_both_loops_keep_an_unfinished_episode_s_totals_at_the_step_limit():
    push_left = stateless(lambda obs, key: jnp.zeros(obs.shape[0], jnp.int32))
    env, params = envs.make("CartPole-v1")
    device = evaluate(push_left, env, params, jax.random.PRNGKey(0), 2, max_steps=4)
    host = evaluate_host(push_left, "gymnasium:CartPole-v1", jax.random.PRNGKey(0), 2, 0, 4)
    for episodes in (device, host):
        np.testing.assert_array_equal(episodes.returns, [4.0, 4.0])
        np.testing.assert_array_equal(episodes.lengths, [4, 4])
        assert not np.any(episodes.finished) and not np.any(episodes.truncated)
    assert host.returns.dtype == np.float64 and device.returns.dtype == jnp.float32
