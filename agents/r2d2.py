"""An R2D2-style recurrent value agent (Kapturowski et al., 2019): a recurrent Q-network
(LSTM or GRU core) trained from replayed sequences.

- Sequence replay: windows of `sequence_length` consecutive steps of one env (the value
  family's sequence replay), each step with the carry the actor held when it acted on it.
- The stored carry: each window starts from the carry its first step was acted with, so
  the network sees its memory as it was then (R2D2's "stored state").
- Burn-in: the first `burn_in` steps only warm the carry up (no gradient through them, no
  loss on them).
- The loss is double Q-learning (rlax) on every step after the burn-in. A step's next
  observation is evaluated with the carry after that step (before any reset), so an episode
  end inside the window bootstraps correctly: a termination does not, a truncation does,
  from the episode's final observation. The carry is reset after each episode end, as the
  actor reset it.
- Legal actions: where the observations end with the legal-action mask
  (`EnvSpec.action_mask`, Jumanji and Pgx), the agent explores and acts greedily among the
  legal actions only, and bootstraps from the best legal next action, as the feed-forward
  value family does.
- With prioritised replay a window's priority is R2D2's mix `eta * max |td| + (1 - eta) *
  mean |td|` over its trained steps.

The value-family options that are not recurrent (distributional heads, noisy nets, n-step
windows) are refused with a clear error.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import distrax
import jax
import jax.numpy as jnp
import optax
import rlax
from purerl.agents.dqn import DQNConfig, DQNState, apply_q_update
from purerl.core import (
    DEVICE_AXIS,
    PRIORITIES,
    Agent,
    Context,
    EnvSpec,
    Metrics,
    Recipe,
    epsilon_greedy_legal,
    mask_illegal,
    maybe_pmean,
    require_array_observations,
    require_discrete,
    reset_carry,
    unroll_episodes,
)
from purerl.networks import RecurrentQNetwork
from purerl.networks.torsos import zero_carry
from purerl.replay import Sample, Schedule
from purerl.replay.base import flatten_time


@dataclasses.dataclass(frozen=True, kw_only=True)
class R2D2Config(DQNConfig):
    """R2D2 hyperparameters: DQN's (replay, network, optimizer, exploration, target), with a
    recurrent torso and sequences.

    Attributes:
      sequence_length: steps per replayed window (burn-in included).
      burn_in: steps at each window's start that only warm up the carry.
      priority_eta: a window's priority is `eta * max + (1 - eta) * mean` of its |TD|s.
    """

    torso: str = "lstm"
    hidden_sizes: tuple[int, ...] = (64, 64)
    double_q: bool = True
    sequence_length: int = 20
    burn_in: int = 5
    priority_eta: float = 0.9
    batch_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.recurrent:
            raise ValueError(
                f"R2D2Config.torso must be recurrent (lstm or gru); got {self.torso!r}."
            )
        unsupported = {
            "--distribution": self.distribution != "none",
            "--noisy": self.noisy,
            "--n-step": self.n_step != 1,
        }
        given = [flag for flag, on in unsupported.items() if on]
        if given:
            raise ValueError(f"R2D2 has no recurrent variant of {', '.join(given)} yet.")
        if not 0 <= self.burn_in < self.sequence_length:
            raise ValueError(
                f"R2D2Config.burn_in ({self.burn_in}) must be at least 0 and below "
                f"sequence_length ({self.sequence_length})."
            )
        if not 0.0 <= self.priority_eta <= 1.0:
            raise ValueError(f"R2D2Config.priority_eta must be in [0, 1]; got {self.priority_eta}.")

    def check_network(self, recurrent_ok: bool = False) -> None:
        super().check_network(recurrent_ok=True)

    @property
    def recurrent(self) -> bool:
        from purerl.networks import is_recurrent

        return is_recurrent(self.torso)


def make(
    config: R2D2Config, *, num_updates: int | None = None, axis_name: str | None = None
) -> Agent:
    """Builds an R2D2 agent (see the module doc)."""
    epsilon = optax.linear_schedule(
        config.epsilon_start, config.epsilon_end, config.epsilon_decay_steps
    )
    tx = config.make_optimizer(config.learning_rate, num_updates)
    cell, cell_size = config.torso, config.hidden_sizes[-1]

    def initial_carry(batch_size: int) -> Any:
        return zero_carry(cell, cell_size, batch_size)

    def init(key: jax.Array, spec: EnvSpec) -> DQNState:
        num_actions = require_discrete(spec.action_space, "R2D2")
        shape = require_array_observations(spec.observation_space, "R2D2")
        network = RecurrentQNetwork(config.make_torso(shape), num_actions, config.dueling)
        obs = jnp.zeros((1,) + tuple(shape), spec.observation_space.dtype)
        params = network.init(key, initial_carry(1), obs)
        steps = jnp.zeros((), jnp.int32)
        return DQNState(params, params, tx.init(params), steps, network, spec.action_mask)

    def act(
        state: DQNState, carry: Any, obs: jax.Array, key: jax.Array, deterministic: bool = False
    ) -> tuple[jax.Array, Any, dict[str, jax.Array]]:
        carry, q = state.network.apply(state.params, carry, obs)
        if deterministic:
            q = mask_illegal(q, obs, state.action_mask)
            return jnp.argmax(q, axis=-1).astype(jnp.int32), carry, {}
        eps = epsilon(config.env_steps(state.steps))
        if state.action_mask:  # Greedy and random actions among the legal ones only.
            explore = distrax.Categorical(probs=epsilon_greedy_legal(q, obs, eps))
        else:
            explore = distrax.EpsilonGreedy(q, eps)
        return explore.sample(seed=key).astype(jnp.int32), carry, {}

    def unroll(network: Any, params: Any, batch: Any, start: Any) -> tuple[jax.Array, Any]:
        """Q-values `[L, N, A]` along time-major windows from the carry `start`, and the
        carries after each step (before the reset that follows an episode end)."""
        done = jnp.logical_or(batch.terminated, batch.truncated)
        step = lambda carry, obs: network.apply(params, carry, obs)  # noqa: E731
        return unroll_episodes(step, start, batch.obs, done, initial_carry(done.shape[1]))

    def next_q(network: Any, params: Any, after: Any, next_obs: jax.Array) -> jax.Array:
        """Q at each step's next observation `[L, N, A]`, with the carry after that step."""
        _, q = network.apply(params, flatten_time(after), flatten_time(next_obs))
        return q.reshape(next_obs.shape[:2] + q.shape[-1:])

    def learn(state: DQNState, sample: Sample, key: jax.Array) -> tuple[DQNState, Metrics]:
        del key
        # Windows [N, L] -> time-major [L, N]; each window starts from its stored carry.
        batch = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), sample.items)
        start = jax.tree.map(lambda x: x[0], batch.carry)
        network, burn = state.network, config.burn_in
        warm = lambda x: x[burn:]  # noqa: E731 (the trained steps)
        if burn:
            head = jax.tree.map(lambda x: x[:burn], batch)
            _, after = unroll(network, jax.lax.stop_gradient(state.params), head, start)
            # The carry after the burn-in, reset if the burn-in's last step ended an episode.
            ended = jnp.logical_or(head.terminated[-1], head.truncated[-1])
            start_online = reset_carry(
                initial_carry(ended.shape[0]), jax.tree.map(lambda x: x[-1], after), ended
            )
            _, after_t = unroll(network, state.target_params, head, start)
            start_target = reset_carry(
                initial_carry(ended.shape[0]), jax.tree.map(lambda x: x[-1], after_t), ended
            )
        else:
            start_online = start_target = start
        tail = jax.tree.map(warm, batch)
        _, after_target = unroll(network, state.target_params, tail, start_target)
        q_t = next_q(network, state.target_params, after_target, tail.next_obs)
        reward = tail.reward.astype(jnp.float32)
        discount = config.gamma * (1.0 - tail.terminated.astype(jnp.float32))

        def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
            q_tm1, after = unroll(network, params, tail, jax.lax.stop_gradient(start_online))
            selector = None
            if config.double_q:
                selector = jax.lax.stop_gradient(next_q(network, params, after, tail.next_obs))
            if state.action_mask:  # The bootstrap action among the legal ones only.
                selector = q_t if selector is None else selector
                selector = mask_illegal(selector, tail.next_obs, True)
            if selector is not None:
                td = jax.vmap(jax.vmap(rlax.double_q_learning))(
                    q_tm1, tail.action, reward, discount, q_t, selector
                )
            else:
                td = jax.vmap(jax.vmap(rlax.q_learning))(q_tm1, tail.action, reward, discount, q_t)
            if config.loss == "huber":
                per_step = rlax.huber_loss(td, config.huber_delta)
            else:
                per_step = 0.5 * jnp.square(td)
            loss = jnp.mean(jnp.mean(per_step, axis=0) * sample.weights)
            return loss, (td, q_tm1)

        (loss, (td, q_tm1)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_state, grads = apply_q_update(state, grads, tx, config, axis_name)
        abs_td = jnp.abs(td)  # [L - burn_in, N]
        eta = config.priority_eta
        priorities = eta * jnp.max(abs_td, axis=0) + (1 - eta) * jnp.mean(abs_td, axis=0)
        metrics = {
            "loss": loss,
            "td_abs": jnp.mean(abs_td),
            "q_mean": jnp.mean(q_tm1),
            "grad_norm": optax.tree_utils.tree_norm(grads),
            "epsilon": epsilon(config.env_steps(state.steps)),
        }
        return new_state, {**maybe_pmean(metrics, axis_name), PRIORITIES: priorities}

    return Agent(init=init, act=act, learn=learn, initial_carry=initial_carry)


def recipe(config: R2D2Config, context: Context) -> Recipe:
    """R2D2's data path (uniform or prioritised replay of windows of `sequence_length` steps,
    one shard per device) and schedule (one gradient step every `train_frequency` vector
    steps)."""
    data = config.replay(
        context.num_devices, context.num_updates, sequence_length=config.sequence_length
    )
    agent = make(config, num_updates=context.num_updates, axis_name=DEVICE_AXIS)
    schedule = Schedule(rollout_length=config.train_frequency)
    return Recipe(agent, data, schedule, config.num_envs, config.gamma)
