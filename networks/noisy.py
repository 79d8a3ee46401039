"""A noisy linear layer (Fortunato et al., 2018) for exploration by parameter noise."""

from __future__ import annotations

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp

NOISE = "noise"  # The Flax RNG stream noisy layers draw from.


def scaled_noise(key: jax.Array, sizes: tuple[int, ...]) -> list[jax.Array]:
    """`f(x) = sign(x) sqrt(|x|)` of standard normal draws, one vector per size, all from one
    draw: factorised noise's factors. One draw per network, not two per layer, matters on a
    CPU, where each of JAX's random draws runs as a loop of its own."""
    x = jax.random.normal(key, (sum(sizes),), jnp.float32)
    x = jnp.sign(x) * jnp.sqrt(jnp.abs(x))
    return jnp.split(x, list(itertools.accumulate(sizes[:-1])))


class NoisyDense(nn.Module):
    """`y = (mu_w + sigma_w * eps_w) x + mu_b + sigma_b * eps_b` with factorised Gaussian
    noise, `eps_w = f(eps_out) f(eps_in)^T`, `eps_b = f(eps_out)`.

    The noise is drawn from the `"noise"` RNG stream, once per call: apply the module with
    `rngs={"noise": key}` to act or learn with fresh noise. Without that stream (greedy
    evaluation, a saved policy) the layer is deterministic and uses the means. A network
    with several noisy layers can draw their factors at once (`scaled_noise`) and pass each
    layer its own as `noise=(f(eps_in), f(eps_out))`.

    Attributes:
      features: output size.
      sigma0: the initial noise scale; each sigma starts at `sigma0 / sqrt(fan_in)`.
    """

    features: int
    sigma0: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array, noise: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
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
        if noise is None:
            if not self.has_rng(NOISE):
                return x @ mu_w + mu_b
            noise = scaled_noise(self.make_rng(NOISE), (fan_in, self.features))
        eps_in, eps_out = noise
        # The noisy kernel itself (fan_in x features products), then one matmul: cheaper than
        # a second matmul for the noise term once a batch has two or more rows, in the
        # forward and the backward pass alike.
        kernel = mu_w + sigma_w * (eps_in[:, None] * eps_out[None, :])
        return x @ kernel + (mu_b + sigma_b * eps_out)
