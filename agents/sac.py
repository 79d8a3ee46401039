"""Soft Actor-Critic (Haarnoja et al., 2018; automatic temperature from Haarnoja et al.,
2018b) for continuous actions: a tanh-squashed Gaussian policy, twin critics with
Polyak-averaged targets (Fujimoto et al., 2018's clipped double Q), and a learned entropy
temperature, each with its own optimizer."""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from purerl.agents.continuous import ActorCriticOptions, critics_loss, replay_recipe
from purerl.agents.optimizers import apply_gradients
from purerl.core import (
    PRIORITIES,
    Agent,
    Context,
    EnvSpec,
    Metrics,
    Recipe,
    feed_forward,
    from_bounds,
    maybe_pmean,
    require_array_observations,
    require_box,
    to_bounds,
)
from purerl.networks import TanhGaussianPolicy, TwinQ
from purerl.replay import Sample


@dataclasses.dataclass(frozen=True, kw_only=True)
class SACConfig(ActorCriticOptions):
    """SAC hyperparameters (with the settings every continuous actor-critic shares,
    `ActorCriticOptions`; the optimizer serves the temperature too).

    Attributes:
      alpha_learning_rate: the temperature optimizer's step size.
      init_alpha: the entropy temperature at the start.
      autotune_alpha: learn the temperature so the policy's entropy tracks the target.
      target_entropy: the entropy target; None for `-action_dim`.
    """

    action_spaces = ("continuous",)  # Not an option: the spaces it acts in.

    alpha_learning_rate: float = 1e-3
    init_alpha: float = 1.0
    autotune_alpha: bool = True
    target_entropy: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init_alpha <= 0:
            raise ValueError(f"SACConfig.init_alpha must be positive; got {self.init_alpha}.")


@struct.dataclass
class SACState:
    actor_params: Any
    critic_params: Any  # Both critics.
    target_critic_params: Any  # Polyak averages of `critic_params`.
    log_alpha: jax.Array  # [] float32, log of the entropy temperature.
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    low: jax.Array  # [A] float32, the action space's lower bounds.
    high: jax.Array  # [A] float32, its upper bounds.
    steps: jax.Array  # [] int32, gradient steps so far.
    actor: nn.Module = struct.field(pytree_node=False)
    critic: nn.Module = struct.field(pytree_node=False)


def critic_loss(
    q_tm1: jax.Array,
    r_t: jax.Array,
    discount_t: jax.Array,
    q_t: jax.Array,
    log_prob_t: jax.Array,
    alpha: jax.Array,
    weights: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The twin critics' soft TD loss (Haarnoja et al., 2018, eq. 5 with clipped double Q).

    Args:
      q_tm1: both critics' Q at the observed state and action `[2, B]`.
      r_t: rewards `[B]`.
      discount_t: `gamma * (1 - terminated)` `[B]`.
      q_t: both target critics' Q at the next state and a fresh policy action `[2, B]`.
      log_prob_t: the policy's log-probability of that action `[B]`.
      alpha: the entropy temperature `[]`.
      weights: importance weights `[B]` (prioritised replay); None for ones.

    Returns:
      `(loss[], td_error[2, B])`: the loss sums the critics' mean `0.5 * td^2`.
    """
    chex.assert_rank([q_t, log_prob_t], [2, 1])
    soft_v_t = jnp.min(q_t, axis=0) - alpha * log_prob_t
    return critics_loss(q_tm1, r_t, discount_t, soft_v_t, weights)


def actor_loss(q: jax.Array, log_prob: jax.Array, alpha: jax.Array) -> jax.Array:
    """The policy loss `E[alpha * log pi(a|s) - min_i Q_i(s, a)]`, a ~ pi (reparameterised).

    Args:
      q: both critics' Q at the state and the policy's action `[2, B]`.
      log_prob: the policy's log-probability of that action `[B]`.
      alpha: the entropy temperature `[]` (not learned here).
    """
    chex.assert_rank([q, log_prob], [2, 1])
    return jnp.mean(jax.lax.stop_gradient(alpha) * log_prob - jnp.min(q, axis=0))


def alpha_loss(log_alpha: jax.Array, log_prob: jax.Array, target_entropy: float) -> jax.Array:
    """The temperature loss `-log_alpha * E[log pi + target_entropy]`: alpha grows while the
    policy's entropy is below the target and shrinks while it is above."""
    chex.assert_rank([log_alpha, log_prob], [0, 1])
    return -log_alpha * jnp.mean(jax.lax.stop_gradient(log_prob) + target_entropy)


def make(
    config: SACConfig, *, num_updates: int | None = None, axis_name: str | None = None
) -> Agent:
    """Builds a SAC agent.

    Args:
      config: the hyperparameters.
      num_updates: learner updates in the run (the horizon of a decaying `lr_schedule`).
      axis_name: a named device axis to average gradients over (data-parallel learner).
    """
    total = num_updates * config.gradient_steps if num_updates else None

    actor_tx = config.flat_optimizer(config.actor_learning_rate, total)
    critic_tx = config.flat_optimizer(config.critic_learning_rate, total)
    alpha_tx = config.flat_optimizer(config.alpha_learning_rate, total)

    def init(key: jax.Array, spec: EnvSpec) -> SACState:
        low, high = require_box(spec.action_space, "SAC")
        shape = require_array_observations(spec.observation_space, "SAC")
        common = dict(layer_norm=config.layer_norm, kernel_init=config.kernel_init)
        actor = TanhGaussianPolicy(config.make_torso(shape), low.shape[0])
        critic = TwinQ(config.hidden_sizes, config.activation, len(shape), **common)
        actor_key, critic_key = jax.random.split(key)
        obs = jnp.zeros((1,) + tuple(shape), spec.observation_space.dtype)
        action = jnp.zeros((1, low.shape[0]), jnp.float32)
        actor_params = actor.init(actor_key, obs)
        critic_params = critic.init(critic_key, obs, action)
        log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
        return SACState(
            actor_params,
            critic_params,
            critic_params,
            log_alpha,
            actor_tx.init(actor_params),
            critic_tx.init(critic_params),
            alpha_tx.init(log_alpha),
            jnp.asarray(low),
            jnp.asarray(high),
            jnp.zeros((), jnp.int32),
            actor,
            critic,
        )

    def act(
        state: SACState, obs: jax.Array, key: jax.Array, deterministic: bool = False
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        dist = state.actor.apply(state.actor_params, obs)
        if deterministic:
            action = jnp.tanh(dist.distribution.mean())
        else:
            action = dist.sample(seed=key)
        return to_bounds(action, state.low, state.high), {}

    def target_entropy(state: SACState) -> float:
        if config.target_entropy is not None:
            return config.target_entropy
        return -float(state.low.shape[0])

    def learn(state: SACState, sample: Sample, key: jax.Array) -> tuple[SACState, Metrics]:
        batch = sample.items
        next_key, actor_key = jax.random.split(key)
        alpha = jnp.exp(state.log_alpha)
        # The stored actions, back from the env's bounds to [-1, 1].
        action = from_bounds(batch.action, state.low, state.high)
        discount_t = config.gamma * (1.0 - batch.terminated.astype(jnp.float32))

        next_action, next_log_prob = state.actor.apply(
            state.actor_params, batch.next_obs
        ).sample_and_log_prob(seed=next_key)
        q_t = state.critic.apply(state.target_critic_params, batch.next_obs, next_action)

        def critic_objective(params: Any) -> tuple[jax.Array, jax.Array]:
            q_tm1 = state.critic.apply(params, batch.obs, action)
            return critic_loss(
                q_tm1,
                batch.reward.astype(jnp.float32),
                discount_t,
                q_t,
                next_log_prob,
                alpha,
                sample.weights,
            )

        (c_loss, td), grads = jax.value_and_grad(critic_objective, has_aux=True)(
            state.critic_params
        )
        critic_params, critic_opt_state = apply_gradients(
            grads, state.critic_opt_state, state.critic_params, critic_tx, axis_name
        )

        def actor_objective(params: Any) -> tuple[jax.Array, jax.Array]:
            pi_action, log_prob = state.actor.apply(params, batch.obs).sample_and_log_prob(
                seed=actor_key
            )
            q = state.critic.apply(critic_params, batch.obs, pi_action)
            return actor_loss(q, log_prob, alpha), log_prob

        (a_loss, log_prob), grads = jax.value_and_grad(actor_objective, has_aux=True)(
            state.actor_params
        )
        actor_params, actor_opt_state = apply_gradients(
            grads, state.actor_opt_state, state.actor_params, actor_tx, axis_name
        )

        entropy_target = target_entropy(state)
        t_loss, grad = jax.value_and_grad(alpha_loss)(state.log_alpha, log_prob, entropy_target)
        log_alpha, alpha_opt_state = state.log_alpha, state.alpha_opt_state
        if config.autotune_alpha:
            log_alpha, alpha_opt_state = apply_gradients(
                grad, alpha_opt_state, log_alpha, alpha_tx, axis_name
            )

        target = optax.incremental_update(critic_params, state.target_critic_params, config.tau)
        metrics = {
            "critic_loss": c_loss,
            "actor_loss": a_loss,
            "alpha_loss": t_loss,
            "alpha": jnp.exp(log_alpha),
            "entropy": -jnp.mean(log_prob),
            "td_abs": jnp.mean(jnp.abs(td)),
        }
        new_state = state.replace(
            actor_params=actor_params,
            critic_params=critic_params,
            target_critic_params=target,
            log_alpha=log_alpha,
            actor_opt_state=actor_opt_state,
            critic_opt_state=critic_opt_state,
            alpha_opt_state=alpha_opt_state,
            steps=state.steps + 1,
        )
        priorities = jnp.mean(jnp.abs(td), axis=0)  # Per device: its own replay shard.
        return new_state, {**maybe_pmean(metrics, axis_name), PRIORITIES: priorities}

    return Agent(init=init, act=feed_forward(act), learn=learn)


def recipe(config: SACConfig, context: Context) -> Recipe:
    """SAC's replay data path and schedule (`continuous.replay_recipe`)."""
    return replay_recipe(config, context, make)
