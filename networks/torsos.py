"""Torsos: observation -> features. Feed-forward ones (MLP, Nature CNN, MinAtar CNN) are
`obs -> features`; recurrent cores (LSTM, GRU) are `(carry, obs) -> (carry, features)`."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

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
    "leaky_relu": nn.leaky_relu,
}

INITIALIZERS: dict[str, Callable[[float], Any]] = {
    # Each takes the gain of the layer it initialises (sqrt(2) for hidden layers).
    "orthogonal": lambda scale: nn.initializers.orthogonal(scale),
    "lecun_normal": lambda scale: nn.initializers.variance_scaling(
        scale**2 / 2, "fan_in", "truncated_normal"
    ),
    "he_normal": lambda scale: nn.initializers.he_normal(),
    "glorot_uniform": lambda scale: nn.initializers.glorot_uniform(),
    "xavier_uniform": lambda scale: nn.initializers.xavier_uniform(),
}


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
    """Looks up an activation by name, with an error that lists the choices."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}."
        ) from None


def initializer(name: str, scale: float = float(np.sqrt(2))) -> Any:
    """Looks up a kernel initializer by name, with an error that lists the choices."""
    try:
        return INITIALIZERS[name](scale)
    except KeyError:
        raise ValueError(
            f"Unknown kernel initializer {name!r}; choose one of {sorted(INITIALIZERS)}."
        ) from None


def _flatten(x: jax.Array, num_obs_dims: int) -> jax.Array:
    if num_obs_dims == 0:
        return x[..., None]
    if num_obs_dims > 1:
        return x.reshape(x.shape[: x.ndim - num_obs_dims] + (-1,))
    return x


# Rows of a dense layer's input from which its kernel gradient takes `_dense_product`'s route.
_ROWS_TO_TRANSPOSE = 256


@jax.custom_vjp
def _dense_product(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


def _dense_product_fwd(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, Any]:
    return _dense_product(x, kernel), (x, kernel)


def _dense_product_bwd(saved: Any, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = saved
    dx = jax.lax.dot_general(g, kernel, (((g.ndim - 1,), (1,)), ((), ())))
    rows = x.reshape(-1, x.shape[-1])
    # The barrier keeps XLA from folding the transpose into the product, where a CPU's
    # library matmul (YNNPACK) would refuse the transposed operand and Eigen would run it.
    dk = jax.lax.optimization_barrier(rows.T) @ g.reshape(-1, g.shape[-1])
    return dx, dk


_dense_product.defvjp(_dense_product_fwd, _dense_product_bwd)


def dense_dot_general(
    x: jax.Array, kernel: jax.Array, dims: Any, precision: Any = None, **kwargs: Any
) -> jax.Array:
    """`jax.lax.dot_general` for `nn.Dense(dot_general=...)`: the same product, whose kernel
    gradient on a CPU, for an input of at least `_ROWS_TO_TRANSPOSE` rows (SAC's batch of
    256), multiplies an explicitly transposed copy of the input. XLA otherwise leaves that
    product (the input's rows contracted) to Eigen, about twice as slow there as the library
    matmul the transposed copy lets it use: SAC's update at Rejax's settings took 5% less
    time (`purerl benchmark --profile`; `benchmarks/cpu_matmuls.py` times the products).
    Elsewhere (a GPU, fewer rows) it is `jax.lax.dot_general` as it is. Its gradient is a
    `jax.custom_vjp`, so forward-mode differentiation (`jax.jvp`, `jax.hessian`) through
    an `MLP` over that many rows on a CPU is refused by JAX; reverse mode is unaffected."""
    rows = int(np.prod(x.shape[:-1]))
    plain = dims != (((x.ndim - 1,), (0,)), ((), ())) or kernel.ndim != 2 or precision or kwargs
    if plain or rows < _ROWS_TO_TRANSPOSE or jax.default_backend() != "cpu":
        return jax.lax.dot_general(x, kernel, dims, precision=precision, **kwargs)
    return _dense_product(x, kernel)


class MLP(nn.Module):
    """A multi-layer perceptron over flattened observations `[..., *obs_shape]`.

    Attributes:
      hidden_sizes: width of each hidden layer.
      activation: name of the activation (see `ACTIVATIONS`).
      num_obs_dims: how many trailing axes form one observation; they are flattened.
      kernel_scale: initialisation gain of the hidden layers.
      layer_norm: layer normalisation after each hidden layer's dense, before its activation.
      kernel_init: name of the initializer (see `INITIALIZERS`).
    """

    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    num_obs_dims: int = 1
    kernel_scale: float = float(np.sqrt(2))
    layer_norm: bool = False
    kernel_init: str = "orthogonal"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _flatten(jnp.asarray(x, jnp.float32), self.num_obs_dims)
        act = activation_fn(self.activation)
        for size in self.hidden_sizes:
            init = initializer(self.kernel_init, self.kernel_scale)
            x = nn.Dense(size, kernel_init=init, dot_general=dense_dot_general)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        return x


def per_member(init: Any, members: int) -> Any:
    """An initializer of `members` stacked arrays `[members, *shape]`, each drawn by `init`
    from its own key; a loop, not `vmap`: jaxlib's batched QR (the orthogonal init) waits on
    the intra-op thread pool, and two such waits deadlock a 2-core CPU."""

    def init_stacked(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Any:
        return jnp.stack([init(k, shape, dtype) for k in jax.random.split(key, members)])

    return init_stacked


class StackedDense(nn.Module):
    """`members` dense layers of one shape as one batched matmul: kernel `[M, in, out]`, bias
    `[M, out]`. Input `[..., in]` shared by every member (`shared`) or `[M, ..., in]`, one
    per member; output `[M, ..., out]`, or `[1, ..., out]` for one `member` alone."""

    features: int
    members: int
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array, shared: bool, member: int | None = None) -> jax.Array:
        init = per_member(self.kernel_init, self.members)
        kernel = self.param("kernel", init, (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.members, self.features))
        if member is not None:  # A plain matmul: `x[1, ..., in]` unless shared.
            return ((x if shared else x[0]) @ kernel[member] + bias[member])[None]
        y = jnp.einsum("...i,mio->m...o" if shared else "m...i,mio->m...o", x, kernel)
        return y + bias.reshape(bias.shape[:1] + (1,) * (y.ndim - 2) + bias.shape[1:])


class StackedLayerNorm(nn.Module):
    """`nn.LayerNorm` (its epsilon, its fast variance) of each member of `[M, ..., F]`, with
    scale and bias `[M, F]`; `[1, ..., F]` for one `member` alone."""

    members: int
    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array, member: int | None = None) -> jax.Array:
        shape = (self.members, x.shape[-1])
        scale = self.param("scale", nn.initializers.ones, shape)
        bias = self.param("bias", nn.initializers.zeros, shape)
        if member is not None:
            scale, bias = scale[member : member + 1], bias[member : member + 1]
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.maximum(jnp.mean(jnp.square(x), axis=-1, keepdims=True) - jnp.square(mean), 0)
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        members = (scale.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
        return y * scale.reshape(members) + bias.reshape(members)


class StackedMLP(nn.Module):
    """`members` MLPs of one shape evaluated as one network: each layer's parameters carry a
    leading member axis (named as `MLP` names them), and each layer is one batched matmul for
    all members, so two small torsos launch the kernels of one (where launches cost more
    than arithmetic: see `agents.ppo.PPOConfig.stack_torsos`). `x[..., *obs_shape] ->
    features[M, ..., hidden]`, or `[1, ..., hidden]` for one `member` alone; member `i`
    computes what an `MLP` with its slice of the parameters computes.

    Attributes:
      members: how many MLPs.
      hidden_sizes, activation, num_obs_dims, kernel_scale, layer_norm, kernel_init: as in
        `MLP`; each member is initialised as an `MLP` would be, from its own key.
    """

    members: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    num_obs_dims: int = 1
    kernel_scale: float = float(np.sqrt(2))
    layer_norm: bool = False
    kernel_init: str = "orthogonal"

    @classmethod
    def of(cls, mlp: MLP, members: int) -> StackedMLP:
        """`members` MLPs shaped as `mlp`."""
        fields = ("hidden_sizes", "activation", "num_obs_dims", "kernel_scale", "layer_norm")
        kwargs = {name: getattr(mlp, name) for name in (*fields, "kernel_init")}
        return cls(members, **kwargs)

    @nn.compact
    def __call__(self, x: jax.Array, member: int | None = None) -> jax.Array:
        x = _flatten(jnp.asarray(x, jnp.float32), self.num_obs_dims)
        act = activation_fn(self.activation)
        init = initializer(self.kernel_init, self.kernel_scale)
        for i, size in enumerate(self.hidden_sizes):
            x = StackedDense(size, self.members, init, name=f"Dense_{i}")(x, i == 0, member)
            if self.layer_norm:
                x = StackedLayerNorm(self.members, name=f"LayerNorm_{i}")(x, member)
            x = act(x)
        if not self.hidden_sizes:  # Every member passes the observation on as it is.
            x = jnp.broadcast_to(x, (1 if member is not None else self.members,) + x.shape)
        return x


class ConvTorso(nn.Module):
    """Convolutions then dense layers over image observations `[..., H, W, C]`.

    `uint8` pixels are scaled to [0, 1]. The preset layer stacks are `NATURE_CNN` (Mnih et
    al., 2015: Atari's 84x84x4 frames) and `MINATAR_CNN` (Young and Tian, 2019: one 3x3
    convolution of 16 channels for MinAtar's 10x10 grids).

    Attributes:
      convs: `(features, kernel, stride)` of each convolution.
      hidden_sizes: widths of the dense layers after them.
      activation, layer_norm, kernel_init: as in `MLP`.
    """

    convs: Sequence[tuple[int, int, int]]
    hidden_sizes: Sequence[int] = (512,)
    activation: str = "relu"
    layer_norm: bool = False
    kernel_init: str = "orthogonal"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        scale = 1.0 / 255.0 if x.dtype == jnp.uint8 else 1.0
        x = x.astype(jnp.float32) * scale
        if x.ndim < 3:
            raise ValueError(
                f"A convolutional torso needs [..., H, W, C] observations; got {x.shape}."
            )
        batch = x.shape[:-3]
        x = x.reshape((-1,) + x.shape[-3:])
        act = activation_fn(self.activation)
        init = initializer(self.kernel_init)
        for i, (features, kernel, stride) in enumerate(self.convs):
            x = act(PatchConv(features, kernel, stride, init, name=f"Conv_{i}")(x))
        x = x.reshape(batch + (-1,))
        for size in self.hidden_sizes:
            x = nn.Dense(size, kernel_init=init)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        return x


class PatchConv(nn.Module):
    """A "VALID" 2-D convolution `[B, H, W, C] -> [B, H', W', features]` computed as one
    matrix product over image patches gathered by strided slicing. Its parameters are
    `nn.Conv`'s (`kernel [k, k, C, features]`, `bias`) and so are its outputs, but on a CPU
    it runs faster: XLA's CPU convolution cost PPO on MinAtar most of its time.

    Attributes:
      features: output channels.
      kernel: the (square) kernel size.
      stride: the stride in both directions.
      kernel_init: the kernel's initializer.
    """

    features: int
    kernel: int
    stride: int = 1
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, s, channels = self.kernel, self.stride, x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (k, k, channels, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        height, width = (x.shape[-3] - k) // s + 1, (x.shape[-2] - k) // s + 1
        if height < 1 or width < 1:
            raise ValueError(
                f"A {k}x{k} convolution does not fit a {x.shape[-3]}x{x.shape[-2]} image."
            )
        patches = [
            x[..., i : i + s * (height - 1) + 1 : s, j : j + s * (width - 1) + 1 : s, :]
            for i in range(k)
            for j in range(k)
        ]
        # [..., H', W', k * k * C], ordered (i, j, c) like the kernel's leading axes.
        patches = jnp.stack(patches, axis=-2).reshape(x.shape[:-3] + (height, width, -1))
        return patches @ kernel.reshape(-1, self.features) + bias


NATURE_CNN = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
NATURE_DENSE = (512,)  # The Nature CNN's dense layer (ReLU), what "auto" gives Atari frames.
MINATAR_CNN = ((16, 3, 1),)


class RecurrentCore(nn.Module):
    """An encoder (MLP or CNN) then an LSTM or GRU cell: `(carry, obs[B, ...]) ->
    (carry, features[B, cell_size])`, one time step.

    Attributes:
      encoder: the feed-forward torso before the cell.
      cell: "lstm" or "gru".
      cell_size: the cell's hidden size.
    """

    encoder: nn.Module
    cell: str = "lstm"
    cell_size: int = 128

    def _cell(self) -> nn.RNNCellBase:
        if self.cell == "lstm":
            return nn.OptimizedLSTMCell(self.cell_size, name="cell")
        if self.cell == "gru":
            return nn.GRUCell(self.cell_size, name="cell")
        raise ValueError(f"Unknown recurrent cell {self.cell!r}; choose lstm or gru.")

    @nn.compact
    def __call__(self, carry: Any, obs: jax.Array) -> tuple[Any, jax.Array]:
        return self._cell()(carry, self.encoder(obs))

    def initialize_carry(self, batch_size: int) -> Any:
        """The zero carry of `batch_size` envs (needs no parameters)."""
        return zero_carry(self.cell, self.cell_size, batch_size)


def zero_carry(cell: str, cell_size: int, batch_size: int) -> Any:
    """The zero carry of an "lstm" (`(c, h)`) or "gru" (`h`) cell, leaves `[B, cell_size]`."""
    zeros = jnp.zeros((batch_size, cell_size), jnp.float32)
    return (zeros, zeros) if cell == "lstm" else zeros


FEED_FORWARD_TORSOS = ("auto", "mlp", "cnn", "minatar_cnn")
RECURRENT_TORSOS = ("lstm", "gru")
TORSOS = FEED_FORWARD_TORSOS + RECURRENT_TORSOS


def check_torso(name: str) -> None:
    if name not in TORSOS:
        raise ValueError(f"Unknown torso {name!r}; choose one of {list(TORSOS)}.")


def is_recurrent(name: str) -> bool:
    check_torso(name)
    return name in RECURRENT_TORSOS


def auto_torso(obs_shape: Sequence[int]) -> str:
    """The feed-forward torso "auto" picks for observations of `obs_shape`: for images
    `[H, W, C]`, Nature's CNN where both sides are at least 36 (what its three layers need),
    MinAtar's where they are at least 5; an MLP otherwise."""
    side = min(obs_shape[:2]) if len(obs_shape) == 3 else 0
    return "cnn" if side >= 36 else "minatar_cnn" if side >= 5 else "mlp"


def make_torso(
    name: str,
    obs_shape: Sequence[int],
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "relu",
    layer_norm: bool = False,
    kernel_init: str = "orthogonal",
    **kwargs: Any,
) -> nn.Module:
    """A torso by name, for observations of `obs_shape`.

    Args:
      name: "mlp", "cnn" (Nature's convolutions, then `hidden_sizes` with `activation`),
        "minatar_cnn", "auto" (the torso `auto_torso` picks; for Nature-sized frames the
        Nature CNN itself, convolutions then one ReLU layer of 512, as Atari agents use it,
        with a warning where `hidden_sizes` and `activation` say otherwise), or
        a recurrent core, "lstm" / "gru" (the feed-forward torso `auto` picks, then the cell,
        of size `hidden_sizes[-1]`).
      obs_shape: the shape of one observation.
      hidden_sizes: widths of the dense layers (after the convolutions for a CNN).
      activation, layer_norm, kernel_init: see `MLP`.
      **kwargs: passed to the module (e.g. `kernel_scale` for an MLP).
    """
    check_torso(name)
    obs_shape = tuple(int(d) for d in obs_shape)
    hidden_sizes = tuple(int(h) for h in hidden_sizes)
    common = dict(activation=activation, layer_norm=layer_norm, kernel_init=kernel_init)
    if name in RECURRENT_TORSOS:
        if not hidden_sizes:
            raise ValueError(f"The {name} torso needs hidden_sizes (the last is its cell size).")
        encoder = make_torso("auto", obs_shape, hidden_sizes[:-1] or hidden_sizes, **common)
        return RecurrentCore(encoder, name, hidden_sizes[-1])
    if name == "auto":
        name = auto_torso(obs_shape)
        if name == "cnn" and (hidden_sizes, activation) != (NATURE_DENSE, "relu"):
            # Agents' dense defaults are tuned for vector observations (PPO's two tanh layers
            # of 64 after Nature's convolutions did not learn Breakout).
            warnings.warn(
                f"The 'auto' torso gives {obs_shape} frames the Nature CNN itself (one ReLU "
                f"layer of 512 after the convolutions), not hidden_sizes {hidden_sizes} with "
                f"{activation}; use the 'cnn' torso (--torso cnn) for those.",
                stacklevel=2,
            )
            hidden_sizes, common["activation"] = NATURE_DENSE, "relu"
    if name == "mlp":
        return MLP(hidden_sizes, num_obs_dims=len(obs_shape), **common, **kwargs)
    if len(obs_shape) != 3:
        raise ValueError(
            f"The {name} torso needs image observations [H, W, C]; got shape {obs_shape}. "
            "Use --torso mlp."
        )
    convs = NATURE_CNN if name == "cnn" else MINATAR_CNN
    return ConvTorso(convs, hidden_sizes, **common, **kwargs)
