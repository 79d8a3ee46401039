"""What the continuous-control agents (SAC, TD3, DDPG) share, written once: their options,
their replay recipe and the critics' regression to a bootstrapped target (actions map
between the policy's `[-1, 1]` and the action space's bounds by `core.to_bounds` and
`core.from_bounds`). Polyak targets are `optax.incremental_update`; the critics are
`networks.TwinQ` (two, or one for DDPG)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
from purerl.agents.options import NetworkOptions, OptimizerOptions
from purerl.core import DEVICE_AXIS, Agent, Context, Recipe, require_positive_fields
from purerl.replay import Schedule
from purerl.replay.options import ReplayOptions


def critics_loss(
    q_tm1: jax.Array,
    r_t: jax.Array,
    discount_t: jax.Array,
    v_t: jax.Array,
    weights: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Every critic regressed to the one target `r_t + discount_t * v_t`.

    Args:
      q_tm1: each critic's Q at the observed state and action `[K, B]`.
      r_t: rewards `[B]`.
      discount_t: `gamma * (1 - terminated)` `[B]`.
      v_t: the next state's value `[B]` (TD3: the smaller target Q at a smoothed target
        action; SAC: the same at a policy sample, less `alpha * log pi`).
      weights: importance weights `[B]` (prioritised replay); None for ones.

    Returns:
      `(loss[], td_error[K, B])`: the loss sums the critics' mean `0.5 * td^2`.
    """
    chex.assert_rank([q_tm1, r_t, discount_t, v_t], [2, 1, 1, 1])
    target = jax.lax.stop_gradient(r_t + discount_t * v_t)
    td = target[None] - q_tm1
    losses = 0.5 * jnp.square(td)
    if weights is not None:
        losses = losses * weights[None]
    return jnp.sum(jnp.mean(losses, axis=-1)), td


@dataclasses.dataclass(frozen=True, kw_only=True)
class ActorCriticOptions(ReplayOptions, NetworkOptions, OptimizerOptions):
    """The settings SAC, TD3 and DDPG share (with the replay, network and optimizer settings
    of `ReplayOptions`, `NetworkOptions` and `OptimizerOptions`; the optimizer serves the
    policy and the critics alike, and the critics are MLPs over the observation and the
    action with the torso's widths).

    Attributes:
      actor_learning_rate: the policy optimizer's step size.
      critic_learning_rate: the critics' optimizer's step size.
      gamma: discount factor.
      tau: Polyak step of the target networks after each update of them.
      num_envs: environments stepped in parallel, over all devices.
      train_frequency: vector env steps between updates.
      gradient_steps: gradient steps per update (with `num_envs` 1 and `train_frequency` 1,
        gradient steps per env step).

    `learning_starts` env steps act uniformly at random before the policy acts and learning
    begins; `prioritized` replay uses the critics' mean |TD error| as priorities.
    """

    actor_learning_rate: float = 1e-3
    critic_learning_rate: float = 1e-3
    gamma: float = 0.99
    tau: float = 0.005
    hidden_sizes: tuple[int, ...] = (256, 256)
    kernel_init: str = "lecun_normal"
    num_envs: int = 1
    train_frequency: int = 1
    gradient_steps: int = 1
    buffer_size: int = 100_000
    batch_size: int = 256
    learning_starts: int = 1_000

    def __post_init__(self) -> None:
        name = type(self).__name__
        self.check_optimizer_options()
        self.check_network()
        self.check_replay()
        require_positive_fields(self, "num_envs", "train_frequency", "gradient_steps")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"{name}.tau must be in (0, 1]; got {self.tau}.")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"{name}.gamma must be in [0, 1]; got {self.gamma}.")

    def flat_optimizer(self, learning_rate: float, total_steps: int | None) -> Any:
        """The configured optimizer, flattened: one update over a vector instead of one per
        parameter array (a network's dozen small leaves cost more in per-op overhead than in
        arithmetic)."""
        return optax.flatten(self.make_optimizer(learning_rate, total_steps))


def replay_recipe(
    config: ActorCriticOptions, context: Context, make: Callable[..., Agent]
) -> Recipe:
    """An off-policy actor-critic's data path (uniform or prioritised replay, one shard per
    device) and schedule (`gradient_steps` every `train_frequency` vector steps, after
    `learning_starts` random steps), with its agent from `make(config, num_updates=...,
    axis_name=...)`."""
    data = config.replay(context.num_devices, context.num_updates * config.gradient_steps)
    agent = make(config, num_updates=context.num_updates, axis_name=DEVICE_AXIS)
    schedule = Schedule(config.train_frequency, config.gradient_steps, config.learning_starts)
    return Recipe(agent, data, schedule, config.num_envs, config.gamma)
