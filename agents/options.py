"""Network and optimizer settings every agent's config shares, so that networks come from
`networks/` and optimizers from optax by name, never built by hand inside an agent."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import optax
from purerl.agents.optimizers import check_optimizer, check_schedule, make_optimizer
from purerl.networks import is_recurrent, make_torso


@dataclasses.dataclass(frozen=True, kw_only=True)
class NetworkOptions:
    """The torso an agent's networks are built on.

    Attributes:
      torso: "auto" (a CNN for image observations `[H, W, C]`, else an MLP), "mlp", "cnn"
        (Nature), "minatar_cnn", or a recurrent core, "lstm" / "gru" (agents that carry it).
      hidden_sizes: widths of the dense layers (for "lstm" / "gru", the last is the cell's
        size, the others the encoder's).
      activation: activation of the hidden layers.
      layer_norm: layer normalisation in the torso's dense layers.
      kernel_init: the torso's initializer ("orthogonal", "lecun_normal", ...).
      normalize_observations: feed the agent observations normalised by running statistics
        kept in its state (`purerl.agents.normalize`), on either loop.
    """

    torso: str = "auto"
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "relu"
    layer_norm: bool = False
    kernel_init: str = "orthogonal"
    normalize_observations: bool = False

    def check_network(self, recurrent_ok: bool = False) -> None:
        """Clear errors for a network the agent cannot build."""
        if is_recurrent(self.torso) and not recurrent_ok:
            raise ValueError(
                f"{type(self).__name__}: this agent has no recurrent variant yet, so --torso "
                f"{self.torso} is not supported; use auto, mlp, cnn or minatar_cnn."
            )

    def make_torso(self, obs_shape: Sequence[int], **kwargs: Any) -> nn.Module:
        """The configured torso for observations of `obs_shape`."""
        return make_torso(
            self.torso,
            obs_shape,
            self.hidden_sizes,
            self.activation,
            self.layer_norm,
            self.kernel_init,
            **kwargs,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimizerOptions:
    """The optimizer an agent trains with.

    Attributes:
      optimizer: any optax optimizer with its arguments, e.g. "adam", "adam(eps=1e-5)",
        "adamw(weight_decay=1e-4)", "rmsprop(decay=0.95)", "sgd(momentum=0.9)", "lion".
      lr_schedule: "constant", "linear" (to 0), "cosine", "warmup_cosine(warmup_steps=N)" or
        "exponential(decay_rate=R)", over the run's gradient steps.
      max_grad_norm: clip gradients to this global norm first (0 or less: no clipping).
    """

    optimizer: str = "adam"
    lr_schedule: str = "constant"
    max_grad_norm: float = 0.0

    def check_optimizer_options(self) -> None:
        """Clear errors for a bad optimizer, schedule or learning rate (every field of the
        config named `learning_rate` or `*_learning_rate` must be a positive number)."""
        check_optimizer(self.optimizer)
        check_schedule(self.lr_schedule)
        for field in dataclasses.fields(self):
            if field.name == "learning_rate" or field.name.endswith("_learning_rate"):
                value = getattr(self, field.name)
                if not isinstance(value, int | float) or not 0 < value < float("inf"):
                    raise ValueError(
                        f"{type(self).__name__}.{field.name} must be a positive number; "
                        f"got {value}."
                    )

    def make_optimizer(
        self, learning_rate: float, total_steps: int | None
    ) -> optax.GradientTransformation:
        """The configured optimizer at `learning_rate`, its schedule over `total_steps`."""
        return make_optimizer(
            self.optimizer, learning_rate, self.lr_schedule, self.max_grad_norm, total_steps
        )
