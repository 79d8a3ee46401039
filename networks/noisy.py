"""A noisy linear layer (Fortunato et al., 2018) for exploration by parameter noise."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

NOISE = "noise"  # The Flax RNG stream noisy layers draw from.


def _scaled_noise(key: jax.Array, size: int) -> jax.Array:
    """`f(x) = sign(x) sqrt(|x|)` of standard normal draws: factorised noise's factors."""
    x = jax.random.normal(key, (size,), jnp.float32)
    return jnp.sign(x) * jnp.sqrt(jnp.abs(x))


class NoisyDense(nn.Module):
    """`y = (mu_w + sigma_w * eps_w) x + mu_b + sigma_b * eps_b` with factorised Gaussian
    noise, `eps_w = f(eps_out) f(eps_in)^T`, `eps_b = f(eps_out)`.

    The noise is drawn from the `"noise"` RNG stream, once per call: apply the module with
    `rngs={"noise": key}` to act or learn with fresh noise. Without that stream (greedy
    evaluation, a saved policy) the layer is deterministic and uses the means.

    Attributes:
      features: output size.
      sigma0: the initial noise scale; each sigma starts at `sigma0 / sqrt(fan_in)`.
    """

    features: int
    sigma0: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        bound = 1.0 / jnp.sqrt(fan_in)

        def uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
            return jax.random.uniform(key, shape, jnp.float32, -bound, bound)

        def constant(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
            del key
            return jnp.full(shape, self.sigma0 * bound, jnp.float32)

        mu_w = self.param("mu_kernel", uniform, (fan_in, self.features))
        mu_b = self.param("mu_bias", uniform, (self.features,))
        sigma_w = self.param("sigma_kernel", constant, (fan_in, self.features))
        sigma_b = self.param("sigma_bias", constant, (self.features,))
        x = jnp.asarray(x, jnp.float32)
        if not self.has_rng(NOISE):
            return x @ mu_w + mu_b
        key_in, key_out = jax.random.split(self.make_rng(NOISE))
        eps_in, eps_out = _scaled_noise(key_in, fan_in), _scaled_noise(key_out, self.features)
        # (mu + sigma * eps_in eps_out^T) x, without forming the noisy kernel.
        noise = ((x * eps_in) @ sigma_w) * eps_out
        return x @ mu_w + noise + mu_b + sigma_b * eps_out
