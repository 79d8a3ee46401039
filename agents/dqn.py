"""Deep Q-Networks (Mnih et al., 2015), with double Q-learning (van Hasselt et al., 2016),
dueling heads (Wang et al., 2016) and prioritised replay (Schaul et al., 2016) as options of
the same agent."""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import rlax
from flax import struct
from purerl.agents.options import NetworkOptions, OptimizerOptions
from purerl.agents.registry import Context, Recipe
from purerl.core import (
    DEVICE_AXIS,
    PRIORITIES,
    Agent,
    EnvSpec,
    Metrics,
    feed_forward,
    maybe_pmean,
    per_device,
    require_discrete,
)
from purerl.networks import QNetwork
from purerl.replay import Sample, Schedule
from purerl.replay.options import ReplayOptions

LOSSES = ("huber", "mse")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DQNConfig(ReplayOptions, NetworkOptions, OptimizerOptions):
    """DQN hyperparameters (with the replay, network and optimizer settings of
    `ReplayOptions`, `NetworkOptions` and `OptimizerOptions`).

    Attributes:
      learning_rate: the optimizer's step size.
      gamma: discount factor.
      double_q: select the next action with the online network, evaluate it with the
        target network (double DQN).
      dueling: a dueling head, Q = V + A - mean(A).
      loss: "huber" (Huber on the TD error, `huber_delta`) or "mse" (0.5 * td^2).
      huber_delta: where the Huber loss turns from quadratic to linear.
      max_grad_norm: clip gradients to this global norm (0 or less: no clipping).
      target_update_period: learner updates between target-network updates.
      tau: target update step: 1.0 copies the online network, less is Polyak averaging.
      epsilon_start: exploration rate at the start of training.
      epsilon_end: exploration rate after `epsilon_decay_steps` environment steps.
      epsilon_decay_steps: environment steps (over all devices) over which epsilon
        decays linearly; counted from the learner's updates, so it holds for any loop
        that learns every `num_envs * train_frequency` steps after `learning_starts`.
      num_envs: environments stepped in parallel, over all devices.
      train_frequency: vectorised environment steps between learner updates.
    """

    learning_rate: float = 2.5e-4
    gamma: float = 0.99
    double_q: bool = False
    dueling: bool = False
    loss: str = "mse"
    huber_delta: float = 1.0
    max_grad_norm: float = 10.0
    target_update_period: int = 32
    tau: float = 1.0
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_steps: int = 250_000
    num_envs: int = 16
    train_frequency: int = 1

    def __post_init__(self) -> None:
        self.check_optimizer_options()
        self.check_network()
        if self.loss not in LOSSES:
            raise ValueError(f"DQNConfig.loss must be one of {LOSSES}; got {self.loss!r}.")
        self.check_replay()
        for name in ("num_envs", "train_frequency", "target_update_period", "epsilon_decay_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"DQNConfig.{name} must be a positive integer; got {getattr(self, name)}."
                )
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"DQNConfig.tau must be in (0, 1]; got {self.tau}.")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"DQNConfig.gamma must be in [0, 1]; got {self.gamma}.")

    @property
    def env_steps_per_update(self) -> int:
        """Environment steps (over all devices) between two learner updates."""
        return self.num_envs * self.train_frequency

    def env_steps(self, learner_steps: jax.Array) -> jax.Array:
        """Environment steps taken by the time of `learner_steps` updates."""
        return self.learning_starts + learner_steps * self.env_steps_per_update


@struct.dataclass
class DQNState:
    params: Any  # Online Q-network parameters.
    target_params: Any  # Target Q-network parameters.
    opt_state: optax.OptState
    steps: jax.Array  # [] int32, learner updates so far.
    network: nn.Module = struct.field(pytree_node=False)


def dqn_loss(
    q_tm1: jax.Array,
    a_tm1: jax.Array,
    r_t: jax.Array,
    discount_t: jax.Array,
    q_t_target: jax.Array,
    q_t_selector: jax.Array | None = None,
    weights: jax.Array | None = None,
    *,
    loss: str = "mse",
    huber_delta: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """Mean TD loss over a batch (weighted by importance weights, if given), and the TD errors.

    Args:
      q_tm1: Q-values at the observed states `[B, A]`.
      a_tm1: actions taken `[B]`.
      r_t: rewards `[B]`.
      discount_t: `gamma * (1 - terminated)` `[B]`.
      q_t_target: target-network Q-values at the next states `[B, A]`.
      q_t_selector: online Q-values at the next states `[B, A]` for double Q-learning
        (van Hasselt et al., 2016); None for the max over `q_t_target`.
      loss: "huber" or "mse" (0.5 * td^2).
      huber_delta: Huber threshold.

    Returns:
      `(loss[], td_error[B])`.
    """
    chex.assert_rank([q_tm1, a_tm1, r_t, discount_t, q_t_target], [2, 1, 1, 1, 2])
    if q_t_selector is None:
        td = jax.vmap(rlax.q_learning)(q_tm1, a_tm1, r_t, discount_t, q_t_target)
    else:
        td = jax.vmap(rlax.double_q_learning)(
            q_tm1, a_tm1, r_t, discount_t, q_t_target, q_t_selector
        )
    losses = rlax.huber_loss(td, huber_delta) if loss == "huber" else rlax.l2_loss(td)
    if weights is not None:
        chex.assert_equal_shape([weights, td])
        losses = weights * losses
    return jnp.mean(losses), td


def make(config: DQNConfig, axis_name: str | None = None, num_updates: int | None = None) -> Agent:
    """Builds a DQN agent.

    Args:
      config: the hyperparameters.
      axis_name: a named device axis to average gradients over (data-parallel learner).
      num_updates: learner updates in the run (the horizon of a decaying `lr_schedule`).
    """
    epsilon = optax.linear_schedule(
        config.epsilon_start, config.epsilon_end, config.epsilon_decay_steps
    )
    tx = config.make_optimizer(config.learning_rate, num_updates)

    def init(key: jax.Array, spec: EnvSpec) -> DQNState:
        num_actions = require_discrete(spec.action_space, "DQN")
        shape = spec.observation_space.shape
        if shape is None:
            raise ValueError(f"DQN needs array observations; got {spec.observation_space}.")
        network = QNetwork(config.make_torso(shape), num_actions, config.dueling)
        params = network.init(key, jnp.zeros((1,) + tuple(shape), spec.observation_space.dtype))
        return DQNState(params, params, tx.init(params), jnp.zeros((), jnp.int32), network)

    def act(
        state: DQNState, obs: jax.Array, key: jax.Array, deterministic: bool = False
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        q = state.network.apply(state.params, obs)
        if deterministic:
            return jnp.argmax(q, axis=-1).astype(jnp.int32), {}
        explore = distrax.EpsilonGreedy(q, epsilon(config.env_steps(state.steps)))
        action = explore.sample(seed=key)
        return action.astype(jnp.int32), {}

    def learn(state: DQNState, sample: Sample, key: jax.Array) -> tuple[DQNState, Metrics]:
        del key  # DQN's update is deterministic given the batch.
        batch, apply = sample.items, state.network.apply
        discount_t = config.gamma * (1.0 - batch.terminated.astype(jnp.float32))
        q_t_target = apply(state.target_params, batch.next_obs)

        def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
            q_tm1 = apply(params, batch.obs)
            selector = (
                jax.lax.stop_gradient(apply(params, batch.next_obs)) if config.double_q else None
            )
            loss, td = dqn_loss(
                q_tm1,
                batch.action,
                batch.reward.astype(jnp.float32),
                discount_t,
                q_t_target,
                selector,
                sample.weights,
                loss=config.loss,
                huber_delta=config.huber_delta,
            )
            return loss, (td, q_tm1)

        (loss, (td, q_tm1)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grads = maybe_pmean(grads, axis_name)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        steps = state.steps + 1
        target_params = optax.periodic_update(
            optax.incremental_update(params, state.target_params, config.tau),
            state.target_params,
            steps,
            config.target_update_period,
        )
        metrics = {
            "loss": loss,
            "td_abs": jnp.mean(jnp.abs(td)),
            "q_mean": jnp.mean(q_tm1),
            "grad_norm": optax.tree_utils.tree_norm(grads),
            "epsilon": epsilon(config.env_steps(state.steps)),
        }
        new_state = state.replace(
            params=params, target_params=target_params, opt_state=opt_state, steps=steps
        )
        # Priorities stay per device: each device writes its own replay shard.
        return new_state, {**maybe_pmean(metrics, axis_name), PRIORITIES: jnp.abs(td)}

    return Agent(init=init, act=feed_forward(act), learn=learn)


def recipe(config: DQNConfig, context: Context) -> Recipe:
    """DQN's data path (uniform or prioritised replay, one shard per device) and schedule
    (one gradient step every `train_frequency` vector steps)."""
    num_envs = per_device(config.num_envs, "--num-envs", context.num_devices)
    data = config.replay(context.num_devices, context.num_updates)
    agent = make(config, axis_name=DEVICE_AXIS, num_updates=context.num_updates)
    schedule = Schedule(rollout_length=config.train_frequency)
    return Recipe(agent, data, schedule, config.num_envs if context.host else num_envs)
