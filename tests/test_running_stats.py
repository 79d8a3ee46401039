import chex
import jax
import jax.numpy as jnp
import numpy as np
from purerl.running_stats import merge_moments, normalized, stats_init, stats_update

from tests.helpers import AXIS, data_parallel


def test_running_statistics_equal_those_of_all_the_data():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(3.0, 2.0, (n, 2, 3)).astype(np.float32) for n in (5, 17, 1, 40)]
    stats = stats_init((3,))
    for chunk in chunks:
        stats = stats_update(stats, jnp.asarray(chunk))
    every = np.concatenate(chunks).reshape(-1, 3)
    assert float(stats.count) == every.shape[0]
    np.testing.assert_allclose(stats.mean, every.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.var, every.var(0), rtol=1e-4)
    z = normalized(stats, jnp.asarray(every), clip=10.0)
    np.testing.assert_allclose(np.mean(z, 0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.std(z, 0), 1.0, rtol=1e-3)
    assert float(jnp.max(normalized(stats, jnp.full((1, 3), 1e6), clip=5.0))) == 5.0


def test_statistics_merge_across_devices_like_one_batch():
    rng = np.random.default_rng(1)
    old = stats_update(stats_init((2,)), jnp.asarray(rng.normal(size=(8, 2))))
    batch = jnp.asarray(rng.normal(5.0, 3.0, (16, 2)), jnp.float32)

    def merge(stats, x, key):
        return stats_update(stats, x, AXIS), key

    four, _ = data_parallel(merge, 4, batch_axis=0)(old, batch, jax.random.PRNGKey(0))
    one = stats_update(old, batch)
    chex.assert_trees_all_close(jax.device_get(four), one, rtol=1e-5)
    assert float(four.count) == 24.0


def test_merge_moments_serves_numpy_like_jax():
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 2.0, 7), rng.normal(-3.0, 0.5, 5)
    count, mean, var = merge_moments(7.0, a.mean(), a.var(), 5.0, b.mean(), b.var())
    both = np.concatenate([a, b])
    assert count == 12.0
    np.testing.assert_allclose([mean, var], [both.mean(), both.var()], rtol=1e-12)
