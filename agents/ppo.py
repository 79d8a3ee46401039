"""Proximal Policy Optimisation (Schulman et al., 2017) for discrete actions, with GAE
(Schulman et al., 2016) and the clipped surrogate objective from rlax."""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import rlax
from flax import struct
from purerl.agents.base import (
    Agent,
    EnvSpec,
    Metrics,
    Transition,
    maybe_pmean,
    require_discrete,
)
from purerl.networks import ActorCritic, observation_dims


@dataclasses.dataclass(frozen=True, kw_only=True)
class PPOConfig:
    """PPO hyperparameters.

    Attributes:
      learning_rate: Adam step size (the start of the schedule when `anneal_lr`).
      anneal_lr: decay the step size linearly to 0 over the run's learner updates
        (needs `num_updates` in `make`).
      adam_eps: Adam's epsilon.
      gamma: discount factor.
      gae_lambda: GAE's lambda.
      clip_eps: the surrogate's ratio clip, also the value clip.
      clip_value: clip the value prediction around the old value, as in the PPO baselines.
      ent_coef: weight of the entropy bonus.
      vf_coef: weight of the value loss.
      max_grad_norm: clip gradients to this global norm (0 or less: no clipping).
      normalize_advantages: standardise advantages in each minibatch (statistics over
        all devices).
      update_epochs: passes over each rollout.
      num_minibatches: minibatches per pass; must divide `num_envs * num_steps`.
      hidden_sizes: widths of the actor's and the critic's hidden layers.
      activation: activation of the hidden layers.
      num_envs: environments stepped in parallel, over all devices.
      num_steps: steps per environment in each rollout.
    """

    learning_rate: float = 2.5e-4
    anneal_lr: bool = True
    adam_eps: float = 1e-5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    clip_value: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    normalize_advantages: bool = True
    update_epochs: int = 4
    num_minibatches: int = 4
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    num_envs: int = 8
    num_steps: int = 64

    def __post_init__(self) -> None:
        for name in ("num_envs", "num_steps", "update_epochs", "num_minibatches"):
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"PPOConfig.{name} must be a positive integer; got {getattr(self, name)}."
                )
        if self.rollout_size % self.num_minibatches:
            raise ValueError(
                f"PPOConfig.num_minibatches ({self.num_minibatches}) must divide the rollout "
                f"of num_envs * num_steps = {self.num_envs} * {self.num_steps} = "
                f"{self.rollout_size} transitions."
            )

    @property
    def rollout_size(self) -> int:
        """Transitions per rollout, over all devices."""
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.rollout_size // self.num_minibatches


@struct.dataclass
class PPOState:
    params: Any  # Actor-critic parameters.
    opt_state: optax.OptState
    steps: jax.Array  # [] int32, learner updates (rollouts learned from) so far.
    network: nn.Module = struct.field(pytree_node=False)


def gae_advantages(
    r_t: jax.Array,
    terminated_t: jax.Array,
    truncated_t: jax.Array,
    v_tm1: jax.Array,
    v_t: jax.Array,
    gamma: float,
    gae_lambda: float,
) -> jax.Array:
    """GAE over a time-major rollout of auto-resetting environments.

    A terminated step does not bootstrap. A truncated step bootstraps from the value
    of its final observation, folded into its reward (`r + gamma * v(final)`), and
    stops the recursion like a terminal, so `rlax.truncated_generalized_advantage_estimation`
    never reads across an episode boundary.

    Args:
      r_t: rewards `[T]`.
      terminated_t: true terminals `[T]`.
      truncated_t: time-limit ends `[T]`.
      v_tm1: values of the observations acted on `[T]`.
      v_t: values of the next observations `[T]` (final observations where an episode ended).
      gamma: discount.
      gae_lambda: GAE lambda.

    Returns:
      advantages `[T]`.
    """
    chex.assert_rank([r_t, terminated_t, truncated_t, v_tm1, v_t], 1)
    terminated_t = terminated_t.astype(jnp.float32)
    truncated_t = truncated_t.astype(jnp.float32) * (1.0 - terminated_t)
    done_t = jnp.maximum(terminated_t, truncated_t)
    r_t = r_t + gamma * truncated_t * v_t
    discount_t = gamma * (1.0 - done_t)
    values = jnp.concatenate([v_tm1, v_t[-1:]])
    return rlax.truncated_generalized_advantage_estimation(r_t, discount_t, gae_lambda, values)


def ppo_loss(
    params: Any,
    network: nn.Module,
    batch: Transition,
    advantages: jax.Array,
    targets: jax.Array,
    *,
    clip_eps: float,
    clip_value: bool,
    vf_coef: float,
    ent_coef: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The PPO loss on a minibatch `[N]`: clipped surrogate + value loss - entropy bonus.

    `batch.extras` holds the behaviour policy's `log_prob` and `value` `[N]`;
    `advantages` (already normalised if wanted) and value `targets` are `[N]`.
    """
    chex.assert_rank([advantages, targets], 1)
    pi, value = network.apply(params, batch.obs)
    log_prob = pi.log_prob(batch.action)
    ratio = jnp.exp(log_prob - batch.extras["log_prob"])
    pg_loss = rlax.clipped_surrogate_pg_loss(ratio, advantages, clip_eps)

    value_loss = jnp.square(value - targets)
    if clip_value:
        old = batch.extras["value"]
        clipped = old + jnp.clip(value - old, -clip_eps, clip_eps)
        value_loss = jnp.maximum(value_loss, jnp.square(clipped - targets))
    value_loss = 0.5 * jnp.mean(value_loss)

    entropy = jnp.mean(pi.entropy())
    total = pg_loss + vf_coef * value_loss - ent_coef * entropy
    return total, {
        "pg_loss": pg_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": jnp.mean((ratio - 1.0) - jnp.log(ratio)),
        "clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32)),
    }


def make(config: PPOConfig, num_updates: int | None = None, axis_name: str | None = None) -> Agent:
    """Builds a PPO agent.

    Args:
      config: the hyperparameters.
      num_updates: learner updates (rollouts) in the whole run; the horizon of the
        learning-rate annealing when `config.anneal_lr`.
      axis_name: a named device axis to average gradients and advantage statistics
        over (data-parallel learner).
    """
    if config.anneal_lr:
        if not num_updates or num_updates < 1:
            raise ValueError("PPO with anneal_lr needs num_updates, the run's learner updates.")
        steps_per_update = config.update_epochs * config.num_minibatches
        lr = optax.linear_schedule(config.learning_rate, 0.0, num_updates * steps_per_update)
    else:
        lr = config.learning_rate
    clip = [optax.clip_by_global_norm(config.max_grad_norm)] if config.max_grad_norm > 0 else []
    tx = optax.flatten(optax.chain(*clip, optax.adam(lr, eps=config.adam_eps)))

    def init(key: jax.Array, spec: EnvSpec) -> PPOState:
        num_actions = require_discrete(spec.action_space, "PPO")
        shape = spec.observation_space.shape
        if shape is None:
            raise ValueError(f"PPO needs array observations; got {spec.observation_space}.")
        network = ActorCritic(
            num_actions, tuple(config.hidden_sizes), config.activation, observation_dims(shape)
        )
        params = network.init(key, jnp.zeros((1,) + tuple(shape), jnp.float32))
        return PPOState(params, tx.init(params), jnp.zeros((), jnp.int32), network)

    def act(
        state: PPOState, obs: jax.Array, key: jax.Array, deterministic: bool = False
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        pi, value = state.network.apply(state.params, obs)
        if deterministic:
            return pi.mode().astype(jnp.int32), {}
        action = pi.sample(seed=key)
        return action.astype(jnp.int32), {"log_prob": pi.log_prob(action), "value": value}

    def normalize(adv: jax.Array) -> jax.Array:
        mean = maybe_pmean(jnp.mean(adv), axis_name)
        var = maybe_pmean(jnp.mean(jnp.square(adv - mean)), axis_name)
        return (adv - mean) / (jnp.sqrt(var) + 1e-8)

    def learn(state: PPOState, batch: Transition, key: jax.Array) -> tuple[PPOState, Metrics]:
        """One PPO update on a time-major rollout `[T, B]`."""
        chex.assert_rank(batch.reward, 2)
        network = state.network
        v_next = network.apply(state.params, batch.next_obs, method=ActorCritic.value)
        advantages = jax.vmap(gae_advantages, in_axes=(1, 1, 1, 1, 1, None, None), out_axes=1)(
            batch.reward.astype(jnp.float32),
            batch.terminated,
            batch.truncated,
            batch.extras["value"],
            v_next,
            config.gamma,
            config.gae_lambda,
        )
        targets = advantages + batch.extras["value"]
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), (batch, advantages, targets))

        def minibatch_step(carry, minibatch):
            params, opt_state = carry
            mb, adv, tgt = minibatch
            if config.normalize_advantages:
                adv = normalize(adv)
            grads, info = jax.grad(ppo_loss, has_aux=True)(
                params,
                network,
                mb,
                adv,
                tgt,
                clip_eps=config.clip_eps,
                clip_value=config.clip_value,
                vf_coef=config.vf_coef,
                ent_coef=config.ent_coef,
            )
            grads = maybe_pmean(grads, axis_name)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), info

        size = flat[1].shape[0]  # This device's share of the rollout.
        if size % config.num_minibatches:
            raise ValueError(
                f"PPO: num_minibatches ({config.num_minibatches}) must divide the "
                f"{size} transitions of each device's rollout."
            )

        def epoch(carry, key):
            perm = jax.random.permutation(key, size)
            shuffled = jax.tree.map(
                lambda x: x[perm].reshape((config.num_minibatches, -1) + x.shape[1:]), flat
            )
            return jax.lax.scan(minibatch_step, carry, shuffled)

        keys = jax.random.split(key, config.update_epochs)
        (params, opt_state), info = jax.lax.scan(epoch, (state.params, state.opt_state), keys)
        metrics = jax.tree.map(jnp.mean, info)
        metrics["value_mean"] = jnp.mean(batch.extras["value"])
        new_state = state.replace(params=params, opt_state=opt_state, steps=state.steps + 1)
        return new_state, maybe_pmean(metrics, axis_name)

    return Agent(init=init, act=act, learn=learn)
