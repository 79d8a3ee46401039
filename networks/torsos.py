"""Torsos: observation -> features."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": nn.tanh,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "elu": nn.elu,
}


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
    """Looks up an activation by name, with an error that lists the choices."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}."
        ) from None


class MLP(nn.Module):
    """A multi-layer perceptron over flattened observations `[..., *obs_shape]`.

    Attributes:
      hidden_sizes: width of each hidden layer.
      activation: name of the activation (see `ACTIVATIONS`).
      num_obs_dims: how many trailing axes form one observation; they are flattened.
      kernel_scale: orthogonal initialisation scale of the hidden layers.
    """

    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    num_obs_dims: int = 1
    kernel_scale: float = float(np.sqrt(2))

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x, jnp.float32)
        if self.num_obs_dims == 0:
            x = x[..., None]
        elif self.num_obs_dims > 1:
            x = x.reshape(x.shape[: x.ndim - self.num_obs_dims] + (-1,))
        act = activation_fn(self.activation)
        for size in self.hidden_sizes:
            x = nn.Dense(size, kernel_init=nn.initializers.orthogonal(self.kernel_scale))(x)
            x = act(x)
        return x
