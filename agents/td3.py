"""TD3 (Fujimoto et al., 2018) and DDPG (Lillicrap et al., 2016) for continuous actions: a
deterministic tanh policy explored with Gaussian noise, critics regressed to a Polyak-averaged
target. TD3 adds its three changes to DDPG, each an option here: the smaller of twin critics
(`num_critics=2`), target policy smoothing (`target_noise`) and delayed policy and target
updates (`policy_delay`). DDPG is this agent without them (`DDPGConfig`)."""

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
    require_positive_fields,
    to_bounds,
)
from purerl.networks import DeterministicPolicy, TwinQ
from purerl.replay import Sample


@dataclasses.dataclass(frozen=True, kw_only=True)
class TD3Config(ActorCriticOptions):
    """TD3 hyperparameters (with the settings every continuous actor-critic shares,
    `ActorCriticOptions`). Noise scales are in units of half the action range (the policy's
    `[-1, 1]`).

    Attributes:
      num_critics: critics; the target takes the smallest (TD3: 2, DDPG: 1).
      policy_delay: critic updates per policy and target update (TD3: 2, DDPG: 1).
      target_noise: std of the Gaussian noise on the target policy's action (TD3's target
        policy smoothing; 0 for none).
      target_noise_clip: that noise is clipped to +-this.
      exploration_noise: std of the Gaussian noise added to the policy's actions while
        training.

    `learning_starts` is 10,000 random steps before learning, as in TD3's paper (the runs
    that kept it are on the TD3 page of the docs, `docs/agents/td3.md`).
    """

    action_spaces = ("continuous",)  # Not an option: the spaces it acts in.

    num_critics: int = 2
    policy_delay: int = 2
    target_noise: float = 0.2
    target_noise_clip: float = 0.5
    exploration_noise: float = 0.1
    learning_starts: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        require_positive_fields(self, "num_critics", "policy_delay")
        for field in ("target_noise", "target_noise_clip", "exploration_noise"):
            if getattr(self, field) < 0:
                raise ValueError(f"{name}.{field} must be >= 0; got {getattr(self, field)}.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DDPGConfig(TD3Config):
    """DDPG: TD3 with one critic, no target policy smoothing and no delay."""

    num_critics: int = 1
    policy_delay: int = 1
    target_noise: float = 0.0
    learning_starts: int = 1_000


@struct.dataclass
class TD3State:
    actor_params: Any
    critic_params: Any  # All critics.
    target_actor_params: Any  # Polyak averages of `actor_params`.
    target_critic_params: Any  # Polyak averages of `critic_params`.
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    low: jax.Array  # [A] float32, the action space's lower bounds.
    high: jax.Array  # [A] float32, its upper bounds.
    steps: jax.Array  # [] int32, gradient steps (critic updates) so far.
    actor: nn.Module = struct.field(pytree_node=False)
    critic: nn.Module = struct.field(pytree_node=False)


def smoothed_target_action(
    action: jax.Array, key: jax.Array, noise: float, noise_clip: float
) -> jax.Array:
    """TD3's target policy smoothing: `clip(action + clip(N(0, noise), +-noise_clip), -1, 1)`
    (the action unchanged where `noise` is 0)."""
    if isinstance(noise, int | float) and noise == 0:  # (A swept noise is traced.)
        return action
    eps = jnp.clip(noise * jax.random.normal(key, action.shape), -noise_clip, noise_clip)
    return jnp.clip(action + eps, -1.0, 1.0)


def actor_loss(q: jax.Array) -> jax.Array:
    """The deterministic policy gradient's loss `-E[Q_1(s, pi(s))]`, from the first critic.

    Args:
      q: the critics' Q at the state and the policy's action `[K, B]`.
    """
    chex.assert_rank(q, 2)
    return -jnp.mean(q[0])


def make(
    config: TD3Config, *, num_updates: int | None = None, axis_name: str | None = None
) -> Agent:
    """Builds a TD3 (or, with `DDPGConfig`, DDPG) agent.

    Args:
      config: the hyperparameters.
      num_updates: learner updates in the run (the horizon of a decaying `lr_schedule`).
      axis_name: a named device axis to average gradients over (data-parallel learner).
    """
    total = num_updates * config.gradient_steps if num_updates else None
    # The policy steps once every `policy_delay` critic steps.
    actor_tx = config.flat_optimizer(
        config.actor_learning_rate, -(-total // config.policy_delay) if total else None
    )
    critic_tx = config.flat_optimizer(config.critic_learning_rate, total)
    name = type(config).__name__.removesuffix("Config")

    def init(key: jax.Array, spec: EnvSpec) -> TD3State:
        low, high = require_box(spec.action_space, name)
        shape = require_array_observations(spec.observation_space, name)
        actor = DeterministicPolicy(config.make_torso(shape), low.shape[0])
        critic = TwinQ(
            config.hidden_sizes,
            config.activation,
            len(shape),
            layer_norm=config.layer_norm,
            kernel_init=config.kernel_init,
            num_critics=config.num_critics,
        )
        actor_key, critic_key = jax.random.split(key)
        obs = jnp.zeros((1,) + tuple(shape), spec.observation_space.dtype)
        actor_params = actor.init(actor_key, obs)
        critic_params = critic.init(critic_key, obs, jnp.zeros((1, low.shape[0]), jnp.float32))
        return TD3State(
            actor_params,
            critic_params,
            actor_params,
            critic_params,
            actor_tx.init(actor_params),
            critic_tx.init(critic_params),
            jnp.asarray(low),
            jnp.asarray(high),
            jnp.zeros((), jnp.int32),
            actor,
            critic,
        )

    def act(
        state: TD3State, obs: jax.Array, key: jax.Array, deterministic: bool = False
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        action = state.actor.apply(state.actor_params, obs)
        if not deterministic and config.exploration_noise > 0:
            noise = config.exploration_noise * jax.random.normal(key, action.shape)
            action = jnp.clip(action + noise, -1.0, 1.0)
        return to_bounds(action, state.low, state.high), {}

    def actor_objective(params: Any, critic_params: Any, obs: jax.Array, state: TD3State) -> Any:
        return actor_loss(state.critic.apply(critic_params, obs, state.actor.apply(params, obs)))

    def learn(state: TD3State, sample: Sample, key: jax.Array) -> tuple[TD3State, Metrics]:
        batch = sample.items
        action = from_bounds(batch.action, state.low, state.high)
        discount_t = config.gamma * (1.0 - batch.terminated.astype(jnp.float32))
        next_action = smoothed_target_action(
            state.actor.apply(state.target_actor_params, batch.next_obs),
            key,
            config.target_noise,
            config.target_noise_clip,
        )
        q_t = state.critic.apply(state.target_critic_params, batch.next_obs, next_action)

        def critic_objective(params: Any) -> tuple[jax.Array, jax.Array]:
            q_tm1 = state.critic.apply(params, batch.obs, action)
            reward = batch.reward.astype(jnp.float32)
            return critics_loss(q_tm1, reward, discount_t, jnp.min(q_t, axis=0), sample.weights)

        (c_loss, td), grads = jax.value_and_grad(critic_objective, has_aux=True)(
            state.critic_params
        )
        critic_params, critic_opt_state = apply_gradients(
            grads, state.critic_opt_state, state.critic_params, critic_tx, axis_name
        )
        state = state.replace(
            critic_params=critic_params,
            critic_opt_state=critic_opt_state,
            steps=state.steps + 1,
        )

        def policy_step(state: TD3State) -> tuple[TD3State, jax.Array]:
            """The policy's gradient step, then both targets' Polyak step."""
            a_loss, grads = jax.value_and_grad(actor_objective)(
                state.actor_params, state.critic_params, batch.obs, state
            )
            actor_params, actor_opt_state = apply_gradients(
                grads, state.actor_opt_state, state.actor_params, actor_tx, axis_name
            )
            return state.replace(
                actor_params=actor_params,
                actor_opt_state=actor_opt_state,
                target_actor_params=optax.incremental_update(
                    actor_params, state.target_actor_params, config.tau
                ),
                target_critic_params=optax.incremental_update(
                    state.critic_params, state.target_critic_params, config.tau
                ),
            ), a_loss

        def no_policy_step(state: TD3State) -> tuple[TD3State, jax.Array]:
            return state, actor_objective(state.actor_params, state.critic_params, batch.obs, state)

        if config.policy_delay == 1:
            state, a_loss = policy_step(state)
        else:
            due = state.steps % config.policy_delay == 0
            state, a_loss = jax.lax.cond(due, policy_step, no_policy_step, state)
        metrics = {
            "critic_loss": c_loss,
            "actor_loss": a_loss,
            "q": jnp.mean(jnp.min(q_t, axis=0)),
            "td_abs": jnp.mean(jnp.abs(td)),
        }
        priorities = jnp.mean(jnp.abs(td), axis=0)  # Per device: its own replay shard.
        return state, {**maybe_pmean(metrics, axis_name), PRIORITIES: priorities}

    return Agent(init=init, act=feed_forward(act), learn=learn)


def recipe(config: TD3Config, context: Context) -> Recipe:
    """TD3's replay data path and schedule (`continuous.replay_recipe`)."""
    return replay_recipe(config, context, make)
