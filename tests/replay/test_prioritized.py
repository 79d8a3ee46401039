import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from purerl.core import PRIORITIES
from purerl.replay import on_policy, prioritized_replay, uniform_replay
from purerl.replay.prioritized import (
    BRANCH,
    tree_depth,
    tree_find,
    tree_init,
    tree_set,
    tree_total,
)


def trajectory(values):
    """A `[T=1, B]` trajectory of scalar items."""
    return {"x": jnp.asarray(values, jnp.float32)[None]}


def example(num=1):
    return {"x": jnp.zeros((1, num), jnp.float32)}


def test_sum_tree_invariants_under_random_writes():
    tree = tree_init(5000)
    assert len(tree) == tree_depth(5000) == 4  # 16 ** 3 < 5000 <= 16 ** 4
    rng = np.random.default_rng(0)
    leaves = np.zeros(tree[-1].shape, np.float32)
    for _ in range(20):
        idx = rng.integers(0, 5000, 64)
        values = rng.uniform(0, 10, 64).astype(np.float32)
        tree = jax.jit(tree_set)(tree, jnp.asarray(idx), jnp.asarray(values))
        for i, v in zip(idx, values, strict=True):  # Duplicates: the last write wins.
            leaves[i] = v
    np.testing.assert_array_equal(tree[-1], leaves)
    # Levels only as long as needed: 5000 leaves in 313 rows of 16, 20 rows above them.
    assert [level.shape[0] for level in tree] == [16, 32, 320, 5008]
    for parent, children in zip(tree[:-1], tree[1:], strict=True):
        # Each parent is its children's float32 sum, recomputed (no accumulated deltas); the
        # padding past the last row of children stays 0.
        sums = children.reshape(-1, BRANCH).sum(-1)
        np.testing.assert_allclose(parent[: sums.shape[0]], sums, rtol=1e-6)
        np.testing.assert_array_equal(parent[sums.shape[0] :], 0.0)
    np.testing.assert_allclose(tree_total(tree), leaves.sum(), rtol=1e-5)


def test_tree_find_never_enters_zero_mass_even_at_the_edges():
    values = np.zeros(40, np.float32)
    values[[1, 4, 33]] = [1.0, 2.0, 0.5]
    tree = tree_set(tree_init(40), jnp.arange(40), jnp.asarray(values))
    queries = jnp.asarray([0.0, 0.5, 0.999999, 1.0, 2.9999, 3.0, 3.25, 3.4999, 3.5, 100.0])
    idx = np.asarray(tree_find(tree, queries))
    np.testing.assert_array_equal(idx, [1, 1, 1, 4, 4, 33, 33, 33, 33, 33])


def test_zero_priority_items_are_never_sampled_at_capacity_one_million():
    buffer = prioritized_replay(1_000_000, 256, alpha=1.0)
    state = buffer.init(example(1000))
    state = jax.jit(buffer.add)(state, trajectory(np.zeros(1000)))
    # Every other item gets priority 0 (eps 0 makes it exactly 0).
    zero_eps = prioritized_replay(1_000_000, 256, alpha=1.0, eps=0.0)
    batch = buffer.sample(state, jax.random.PRNGKey(0))
    idx = jnp.arange(1000)
    batch = batch._replace(indices=idx)
    state = zero_eps.update(state, batch, {PRIORITIES: (idx % 2).astype(jnp.float32)})
    sample = jax.jit(zero_eps.sample)
    for i in range(50):
        got = np.asarray(sample(state, jax.random.PRNGKey(i)).indices)
        assert np.all(got % 2 == 1) and np.all(got < 1000)


def test_sampled_frequencies_match_priorities():
    alpha = 0.5
    buffer = prioritized_replay(64, 64, alpha=alpha)
    state = buffer.init(example(64))
    state = buffer.add(state, trajectory(np.zeros(64)))
    priorities = jnp.arange(1, 65, dtype=jnp.float32)
    batch = buffer.sample(state, jax.random.PRNGKey(0))._replace(indices=jnp.arange(64))
    state = buffer.update(state, batch, {PRIORITIES: priorities})
    counts = np.zeros(64)
    sample = jax.jit(buffer.sample)
    draws = 800
    for i in range(draws):
        np.add.at(counts, np.asarray(sample(state, jax.random.PRNGKey(i)).indices), 1)
    expected = np.asarray(priorities + 1e-6) ** alpha
    expected = expected / expected.sum() * draws * 64
    # Chi-square test at 64 - 1 degrees of freedom: the 99.9% quantile is about 104.
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < 104, chi2


def test_importance_weights_by_hand_and_beta_annealing():
    buffer = prioritized_replay(4, 4, alpha=1.0, beta_start=0.5, beta_steps=2, eps=0.0)
    state = buffer.add(buffer.init(example(4)), trajectory([0, 0, 0, 0]))
    batch = buffer.sample(state, jax.random.PRNGKey(0))._replace(indices=jnp.arange(4))
    state = buffer.update(state, batch, {PRIORITIES: jnp.asarray([1.0, 1.0, 1.0, 5.0])})
    # samples = 1 -> beta = 0.5 + 0.5 * 1 / 2 = 0.75. P = (1, 1, 1, 5) / 8; N = 4.
    # w_i = (4 * P_i) ^ -0.75, divided by the largest: (1 / 2) ^ -0.75 for the three 1s.
    batch = buffer.sample(state, jax.random.PRNGKey(3))
    prob = np.where(np.asarray(batch.indices) == 3, 5 / 8, 1 / 8)
    w = (4 * prob) ** -0.75
    np.testing.assert_allclose(batch.weights, w / w.max(), rtol=1e-5)
    # Once annealed, beta = 1.
    state = buffer.update(state, batch, {PRIORITIES: jnp.asarray([1.0, 1.0, 1.0, 1.0])})
    assert int(state.samples) == 2


def test_new_items_get_the_largest_priority_seen():
    buffer = prioritized_replay(8, 2, alpha=1.0, eps=0.0)
    state = buffer.add(buffer.init(example(2)), trajectory([0, 0]))
    batch = buffer.sample(state, jax.random.PRNGKey(0))._replace(indices=jnp.arange(2))
    state = buffer.update(state, batch, {PRIORITIES: jnp.asarray([7.0, 3.0])})
    state = buffer.add(state, trajectory([1, 1]))
    np.testing.assert_allclose(state.tree[-1][2:4], 7.0)
    with pytest.raises(ValueError, match="shaped like init's example"):
        buffer.add(state, trajectory([1, 1, 1]))
    assert bool(buffer.can_sample(state))


def test_missing_priorities_are_a_clear_error():
    buffer = prioritized_replay(8, 2)
    state = buffer.add(buffer.init(example(2)), trajectory([0, 0]))
    with pytest.raises(ValueError, match="per-sample priorities"):
        buffer.update(state, buffer.sample(state, jax.random.PRNGKey(0)), {"loss": 0.0})


def test_uniform_and_on_policy_paths_share_the_interface():
    traj = {"x": jnp.arange(12, dtype=jnp.float32).reshape(3, 4)}
    uniform = uniform_replay(16, 5)
    state = uniform.add(uniform.init(traj), traj)
    batch = uniform.sample(state, jax.random.PRNGKey(0))
    chex.assert_shape([batch.items["x"], batch.indices, batch.weights], (5,))
    np.testing.assert_array_equal(batch.items["x"], batch.indices)  # Items sit at [t * B + b].
    np.testing.assert_array_equal(batch.weights, 1.0)
    assert uniform.update(state, batch, {}) is state
    rollout = on_policy()
    state = rollout.add(rollout.init(traj), traj)
    assert rollout.can_sample(state) is True
    chex.assert_trees_all_equal(rollout.sample(state, jax.random.PRNGKey(0)), traj)


def test_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="larger than its capacity"):
        prioritized_replay(10, 20)
    with pytest.raises(ValueError, match="min_size"):
        prioritized_replay(10, 2, 11)
    with pytest.raises(ValueError, match="alpha >= 0"):
        prioritized_replay(10, 2, alpha=-1)
    from tests.helpers import transitions

    # A rollout of 16 newest transitions leaves no room to sample beside them.
    with pytest.raises(ValueError, match="has no room for a rollout of 16 transitions"):
        uniform_replay(10, 2).init(transitions(jax.random.PRNGKey(0), (2, 8)))


def test_capacity_rounds_up_to_whole_rollouts():
    # 10,000 slots asked for, rollouts of 32, learning from 10,000 on: 313 rollouts.
    state = uniform_replay(10_000, 32, 10_000).init({"x": jnp.zeros((2, 16))})
    assert state.storage["x"].shape == (10_016,)


def test_windows_longer_than_an_add_become_sampleable_only_when_complete():
    from tests.helpers import transitions

    # Adds of one step of 2 envs, windows of 3 steps: the newest 6 slots wait, more than
    # one add holds, so a slot gets priority only once 3 rows were added after it.
    replay = prioritized_replay(32, 2, 2, sequence_length=3)
    example = transitions(jax.random.PRNGKey(0), (1, 2))
    state = replay.init(example)
    add = jax.jit(replay.add)
    for k in range(1, 9):
        state = add(state, transitions(jax.random.PRNGKey(k), (1, 2)))
        ready = np.asarray(state.tree[-1][:32] > 0)
        np.testing.assert_array_equal(ready, np.arange(32) < max(0, 2 * k - 6), err_msg=f"{k}")
    sample = replay.sample(state, jax.random.PRNGKey(9))
    chex.assert_shape(sample.items.reward, (2, 3))
    assert bool(jnp.all(sample.indices < 10))


def test_benchmark_replay_prints_a_row_of_three_timings_per_cell(capsys):
    from purerl.experiments.benchmark_replay import main

    main(
        ["--capacities", "100", "300", "--items", "cartpole", "--batch-size", "8"]
        + ["--add-size", "4", "--calls", "2", "--repeats", "1"]
    )
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    cells = [row for row in rows if row and row[0] == "cartpole"]
    assert [row[1] for row in cells] == ["100", "300"]
    for row in cells:
        assert len(row) == 5 and all(float(x) > 0 for x in row[2:]), row


@pytest.mark.parametrize("flag", ["--calls", "--repeats", "--batch-size", "--capacities"])
def test_benchmark_replay_refuses_a_count_below_one_naming_the_flag(flag, capsys):
    from purerl.experiments.benchmark_replay import main

    with pytest.raises(SystemExit) as exit_info:
        main([flag, "0"])
    assert exit_info.value.code == 2
    assert f"argument {flag}: must be a positive integer; got '0'" in capsys.readouterr().err
