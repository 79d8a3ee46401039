"""Q-learning with experience replay and a target network (Mnih et al., *Human-level control
through deep reinforcement learning*, Nature 2015), as a purerl plugin.

Written against purerl's public API only: a config dataclass, `make(config) -> purerl.Agent`
and `recipe(config, context) -> purerl.Recipe`. The package's `pyproject.toml` registers it:

    [project.entry-points."purerl.agents"]
    qlearn = "purerl_qlearn.qlearn:QLearnConfig"

so that, installed, `purerl qlearn --env CartPole-v1` trains it with every option of purerl's
command line (`--num-seeds`, `--sweep learning_rate=...`, `--resume`, `--eval-episodes`, ...)
and `purerl.load_policy(run_dir)` loads what it trained.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import purerl
import rlax
from flax import struct
from purerl.core import (
    DEVICE_AXIS,
    EnvSpec,
    Metrics,
    feed_forward,
    maybe_pmean,
    per_device,
    require_discrete,
)
from purerl.replay import Sample, Schedule, uniform_replay


@dataclasses.dataclass(frozen=True, kw_only=True)
class QLearnConfig:
    """Q-learning hyperparameters; each is a flag of `purerl qlearn` (`--learning-rate`), and
    the float ones can be swept in one program (`--sweep learning_rate=3e-4,1e-3`).

    Attributes:
      learning_rate: Adam's step size.
      gamma: discount factor.
      tau: the target network's Polyak step towards the online network after each update.
      epsilon_start: exploration rate at the start of training.
      epsilon_end: exploration rate after `epsilon_decay_steps` env steps.
      epsilon_decay_steps: env steps (over all devices) over which epsilon decays linearly.
      hidden_size: width of the Q-network's two hidden layers.
      num_envs: environments stepped in parallel, over all devices.
      buffer_size: replay capacity in transitions, over all devices.
      batch_size: transitions per gradient step, over all devices.
      learning_starts: env steps (over all devices) collected before learning begins.
    """

    learning_rate: float = 1e-3
    gamma: float = 0.99
    tau: float = 0.05
    epsilon_start: float = 1.0
    epsilon_end: float = 0.01
    epsilon_decay_steps: int = 25_000
    hidden_size: int = 64
    num_envs: int = 8
    buffer_size: int = 20_000
    batch_size: int = 64
    learning_starts: int = 1_000

    def __post_init__(self) -> None:
        for name in ("epsilon_decay_steps", "hidden_size", "num_envs", "buffer_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"QLearnConfig.{name} must be positive; got {getattr(self, name)}."
                )
        if self.learning_rate <= 0:
            raise ValueError(
                f"QLearnConfig.learning_rate must be positive; got {self.learning_rate}."
            )
        if not 0 < self.tau <= 1:
            raise ValueError(f"QLearnConfig.tau must be in (0, 1]; got {self.tau}.")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"QLearnConfig.gamma must be in [0, 1]; got {self.gamma}.")
        if not 0 < self.batch_size <= self.buffer_size:
            raise ValueError(
                f"QLearnConfig.batch_size ({self.batch_size}) must be positive and at most "
                f"buffer_size ({self.buffer_size})."
            )
        if not 0 <= self.learning_starts <= self.buffer_size:
            raise ValueError(
                f"QLearnConfig.learning_starts ({self.learning_starts}) must lie between 0 and "
                f"buffer_size ({self.buffer_size}), which must hold what learning starts from."
            )


class QNetwork(nn.Module):
    """An MLP from observations `[B, ...]` to Q-values `[B, num_actions]`."""

    num_actions: int
    hidden_size: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs.reshape((obs.shape[0], -1)).astype(jnp.float32)
        x = nn.relu(nn.Dense(self.hidden_size)(x))
        x = nn.relu(nn.Dense(self.hidden_size)(x))
        return nn.Dense(self.num_actions)(x)


@struct.dataclass
class QLearnState:
    params: Any  # Online Q-network parameters.
    target_params: Any  # Target Q-network parameters.
    opt_state: optax.OptState
    steps: jax.Array  # [] int32, learner updates so far.
    network: QNetwork = struct.field(pytree_node=False)


def q_loss(
    q_tm1: jax.Array,
    a_tm1: jax.Array,
    r_t: jax.Array,
    discount_t: jax.Array,
    q_t: jax.Array,
    weights: jax.Array,
) -> jax.Array:
    """Mean weighted squared TD error of Q-learning over a batch: `q_tm1[B, A]` at the
    observed states, `a_tm1[B]`, `r_t[B]`, `discount_t[B]` and target Q-values `q_t[B, A]`
    at the next states; `weights[B]` are the replay sample's (0 for an unusable slot)."""
    td = jax.vmap(rlax.q_learning)(q_tm1, a_tm1, r_t, discount_t, q_t)
    return jnp.mean(weights * rlax.l2_loss(td))


def make(config: QLearnConfig, axis_name: str | None = None) -> purerl.Agent:
    """The Q-learning agent; with `axis_name`, gradients are averaged over that device axis."""
    tx = optax.adam(config.learning_rate)
    epsilon = optax.linear_schedule(
        config.epsilon_start, config.epsilon_end, config.epsilon_decay_steps
    )

    def env_steps(state: QLearnState) -> jax.Array:
        return config.learning_starts + state.steps * config.num_envs

    def init(key: jax.Array, spec: EnvSpec) -> QLearnState:
        network = QNetwork(require_discrete(spec.action_space, "qlearn"), config.hidden_size)
        params = network.init(key, jnp.zeros((1,) + spec.observation_space.shape))
        return QLearnState(params, params, tx.init(params), jnp.zeros((), jnp.int32), network)

    def act(
        state: QLearnState, obs: jax.Array, key: jax.Array, deterministic: bool = False
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        q = state.network.apply(state.params, obs)
        if deterministic:
            return jnp.argmax(q, axis=-1).astype(jnp.int32), {}
        action = distrax.EpsilonGreedy(q, epsilon(env_steps(state))).sample(seed=key)
        return action.astype(jnp.int32), {}

    def learn(state: QLearnState, sample: Sample, key: jax.Array) -> tuple[QLearnState, Metrics]:
        del key
        batch = sample.items  # Transitions [N].
        q_t = state.network.apply(state.target_params, batch.next_obs)
        # A time limit (truncated) bootstraps from the final observation; a terminal does not.
        discount_t = config.gamma * (1.0 - batch.terminated.astype(jnp.float32))

        def loss_fn(params: Any) -> tuple[jax.Array, jax.Array]:
            q_tm1 = state.network.apply(params, batch.obs)
            return q_loss(q_tm1, batch.action, batch.reward, discount_t, q_t, sample.weights), q_tm1

        (loss, q_tm1), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grads = maybe_pmean(grads, axis_name)
        updates, opt_state = tx.update(grads, state.opt_state)
        params = optax.apply_updates(state.params, updates)
        target_params = optax.incremental_update(params, state.target_params, config.tau)
        state = state.replace(
            params=params, target_params=target_params, opt_state=opt_state, steps=state.steps + 1
        )
        metrics = {"loss": loss, "q_mean": jnp.mean(q_tm1), "epsilon": epsilon(env_steps(state))}
        return state, maybe_pmean(metrics, axis_name)

    return purerl.Agent(init, feed_forward(act), learn)


def recipe(config: QLearnConfig, context: purerl.Context) -> purerl.Recipe:
    """The agent with its data path (uniform replay, one shard per device) and schedule (one
    gradient step after each vector env step)."""
    n = context.num_devices
    batch_size = per_device(config.batch_size, "--batch-size", n)
    data = uniform_replay(
        per_device(config.buffer_size, "--buffer-size", n),
        batch_size,
        min_size=max(batch_size, config.learning_starts // n),
    )
    agent = make(config, axis_name=DEVICE_AXIS)
    return purerl.Recipe(agent, data, Schedule(rollout_length=1), config.num_envs, config.gamma)
