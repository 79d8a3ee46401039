"""The value-based family: Deep Q-Networks (Mnih et al., 2015) and every variant as an option
of the same learner: double Q-learning (van Hasselt et al., 2016), dueling heads (Wang et
al., 2016), prioritised replay (Schaul et al., 2016), n-step returns from sequence replay,
distributional heads, categorical (C51; Bellemare et al., 2017) or quantile (QR-DQN; Dabney
et al., 2018), and noisy nets (Fortunato et al., 2018). Rainbow (Hessel et al., 2018) is all
of them at once.

The named agents `c51`, `qrdqn` and `rainbow` are this agent with other defaults
(`C51Config`, `QRDQNConfig`, `RainbowConfig`); each option can be switched on the command
line of any of them (`--n-step 3`, `--no-noisy`, ...)."""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import rlax
from flax import struct
from purerl.agents.optimizers import apply_gradients
from purerl.agents.options import NetworkOptions, OptimizerOptions
from purerl.core import (
    DEVICE_AXIS,
    PRIORITIES,
    Agent,
    Context,
    EnvSpec,
    Metrics,
    Recipe,
    epsilon_greedy_legal,
    feed_forward,
    mask_illegal,
    maybe_pmean,
    require_array_observations,
    require_discrete,
    require_positive_fields,
)
from purerl.networks import QNetwork
from purerl.networks.noisy import NOISE
from purerl.replay import Sample, Schedule
from purerl.replay.options import ReplayOptions

LOSSES = ("huber", "mse")
DISTRIBUTIONS = ("none", "categorical", "quantile")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DQNConfig(ReplayOptions, NetworkOptions, OptimizerOptions):
    """DQN hyperparameters (with the replay, network and optimizer settings of
    `ReplayOptions`, `NetworkOptions` and `OptimizerOptions`).

    The defaults keep DQN from collapsing after it solves CartPole: layer normalisation in
    the torso (`layer_norm=True`, where `NetworkOptions` has none), a learning rate decaying
    linearly to 0 (`lr_schedule="linear"`), a Polyak-averaged target network (`tau=0.05`
    every update) and a final exploration rate of 0.01. The runs behind these choices are
    on the DQN page of the docs (`docs/agents/dqn.md`).

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
      n_step: bootstrap after this many steps (n-step returns, from windows of `n_step`
        steps of sequence replay); an episode end inside the window ends the return there
        (a termination without bootstrapping, a time-limit truncation from the episode's
        final observation).
      distribution: "none" (Q-values), "categorical" (C51: a softmax over `num_atoms` fixed
        returns in `[v_min, v_max]`, the projected cross-entropy loss) or "quantile"
        (QR-DQN: `num_atoms` quantiles, the quantile Huber loss with `huber_delta`).
      num_atoms: atoms (categorical) or quantiles (quantile) per action.
      v_min: the smallest return a categorical distribution can represent.
      v_max: the largest.
      noisy: noisy linear layers in the Q head, exploring by parameter noise (with
        `epsilon_start = epsilon_end = 0`, only by it); greedy evaluation uses their means.
      noisy_sigma: the noisy layers' initial noise scale.
    """

    action_spaces = ("discrete",)  # Not an option: the spaces it acts in.

    layer_norm: bool = True
    lr_schedule: str = "linear"
    learning_rate: float = 2.5e-4
    gamma: float = 0.99
    double_q: bool = False
    dueling: bool = False
    loss: str = "mse"
    huber_delta: float = 1.0
    max_grad_norm: float = 10.0
    target_update_period: int = 1
    tau: float = 0.05
    epsilon_start: float = 1.0
    epsilon_end: float = 0.01
    epsilon_decay_steps: int = 250_000
    num_envs: int = 16
    train_frequency: int = 1
    n_step: int = 1
    distribution: str = "none"
    num_atoms: int = 51
    v_min: float = -100.0
    v_max: float = 100.0
    noisy: bool = False
    noisy_sigma: float = 0.5

    def __post_init__(self) -> None:
        name = type(self).__name__
        self.check_optimizer_options()
        self.check_network()
        if self.loss not in LOSSES:
            raise ValueError(f"{name}.loss must be one of {LOSSES}; got {self.loss!r}.")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"{name}.distribution must be one of {DISTRIBUTIONS}; got {self.distribution!r}."
            )
        self.check_replay()
        require_positive_fields(
            self,
            "num_envs",
            "train_frequency",
            "target_update_period",
            "epsilon_decay_steps",
            "n_step",
        )
        if self.distribution != "none" and self.num_atoms < 2:
            raise ValueError(
                f"{name}.num_atoms must be at least 2 for a {self.distribution} distribution; "
                f"got {self.num_atoms}."
            )
        if self.distribution == "categorical" and not self.v_min < self.v_max:
            raise ValueError(
                f"{name} needs v_min < v_max for its categorical support; got "
                f"[{self.v_min}, {self.v_max}]."
            )
        if self.noisy_sigma < 0:
            raise ValueError(f"{name}.noisy_sigma must be >= 0; got {self.noisy_sigma}.")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"{name}.tau must be in (0, 1]; got {self.tau}.")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"{name}.gamma must be in [0, 1]; got {self.gamma}.")
        if not 0.0 <= self.epsilon_end <= 1.0 or not 0.0 <= self.epsilon_start <= 1.0:
            raise ValueError(
                f"{name}: epsilon_start and epsilon_end must lie in [0, 1]; got "
                f"{self.epsilon_start} and {self.epsilon_end}."
            )

    @property
    def env_steps_per_update(self) -> int:
        """Environment steps (over all devices) between two learner updates."""
        return self.num_envs * self.train_frequency

    def env_steps(self, learner_steps: jax.Array) -> jax.Array:
        """Environment steps taken by the time of `learner_steps` updates."""
        return self.learning_starts + learner_steps * self.env_steps_per_update


@dataclasses.dataclass(frozen=True, kw_only=True)
class C51Config(DQNConfig):
    """C51 (Bellemare et al., 2017): DQN with a categorical value distribution of
    `num_atoms` atoms on `[v_min, v_max]`, learned by rlax's projected cross-entropy."""

    distribution: str = "categorical"
    num_atoms: int = 101


@dataclasses.dataclass(frozen=True, kw_only=True)
class QRDQNConfig(DQNConfig):
    """QR-DQN (Dabney et al., 2018): DQN with `num_atoms` quantiles per action, learned by
    rlax's quantile Huber loss (`huber_delta`, kappa in the paper)."""

    distribution: str = "quantile"
    num_atoms: int = 51


@dataclasses.dataclass(frozen=True, kw_only=True)
class RainbowConfig(DQNConfig):
    """Rainbow (Hessel et al., 2018): double Q-learning, a dueling head, 3-step returns,
    prioritised replay (alpha 0.5, priorities the distributional loss), a categorical
    distribution and noisy nets, each switchable (`--no-double-q`, `--no-dueling`,
    `--n-step 1`, `--no-prioritized`, `--distribution none`, `--no-noisy`)."""

    double_q: bool = True
    dueling: bool = True
    n_step: int = 3
    prioritized: bool = True
    priority_alpha: float = 0.5
    distribution: str = "categorical"
    num_atoms: int = 51
    noisy: bool = True


@struct.dataclass
class DQNState:
    params: Any  # Online Q-network parameters.
    target_params: Any  # Target Q-network parameters.
    opt_state: optax.OptState
    steps: jax.Array  # [] int32, learner updates so far.
    network: nn.Module = struct.field(pytree_node=False)
    # Observations end with the legal-action mask (EnvSpec.action_mask).
    action_mask: bool = struct.field(pytree_node=False, default=False)


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


def project_onto_atoms(probs: jax.Array, values: jax.Array, atoms: jax.Array) -> jax.Array:
    """Distributions `probs` `[B, K]` on the shifted supports `values` `[B, K]`, projected
    onto the fixed, evenly spaced `atoms` `[K]` (Bellemare et al., 2017): each mass, clipped
    into the support, is split between its two neighbouring atoms in proportion to its
    distance from them. The same projection as rlax's `categorical_l2_project`, which
    computes it densely (`K x K` weights per row, 2/3 of C51's loss on a CPU); this adds
    each mass to its two atoms directly."""
    k = atoms.shape[-1]
    spacing = (atoms[-1] - atoms[0]) / (k - 1)
    position = (jnp.clip(values, atoms[0], atoms[-1]) - atoms[0]) / spacing  # In [0, K-1].
    lower = jnp.clip(jnp.floor(position), 0, k - 1)
    upper_weight = position - lower
    lower = lower.astype(jnp.int32)
    upper = jnp.minimum(lower + 1, k - 1)
    rows = jnp.arange(probs.shape[0])[:, None]
    projected = jnp.zeros_like(probs).at[rows, lower].add(probs * (1.0 - upper_weight))
    return projected.at[rows, upper].add(probs * upper_weight)


def categorical_loss(
    logits_tm1: jax.Array,
    a_tm1: jax.Array,
    r_t: jax.Array,
    discount_t: jax.Array,
    logits_t: jax.Array,
    atoms: jax.Array,
    q_t_selector: jax.Array | None = None,
) -> jax.Array:
    """C51's loss per transition `[B]`: the cross-entropy between the taken action's
    distribution and the target's (the greedy next action's distribution, shifted by
    `r_t + discount_t * z` and projected back onto the atoms): rlax's
    `categorical_q_learning`, or `categorical_double_q_learning` with a selector, with the
    projection done by `project_onto_atoms`.

    Args:
      logits_tm1: logits at the observed states `[B, A, K]`.
      a_tm1: actions taken `[B]`.
      r_t, discount_t: (n-step) returns and bootstrap discounts `[B]`.
      logits_t: target-network logits at the bootstrap states `[B, A, K]`.
      atoms: the support `[K]`.
      q_t_selector: online Q-values at the bootstrap states `[B, A]` to pick the next
        action with (double Q-learning); None picks by the target's own Q-values.
    """
    chex.assert_rank([logits_tm1, a_tm1, r_t, discount_t, logits_t], [3, 1, 1, 1, 3])
    probs_t = jax.nn.softmax(logits_t, axis=-1)
    if q_t_selector is None:
        q_t_selector = jnp.sum(probs_t * atoms, axis=-1)
    a_t = jnp.argmax(q_t_selector, axis=-1)
    p_target = jnp.take_along_axis(probs_t, a_t[:, None, None], axis=1)[:, 0]
    values = r_t[:, None] + discount_t[:, None] * atoms
    target = jax.lax.stop_gradient(project_onto_atoms(p_target, values, atoms))
    logits_a = jnp.take_along_axis(logits_tm1, a_tm1[:, None, None], axis=1)[:, 0]
    return distrax.Categorical(probs=target).cross_entropy(distrax.Categorical(logits=logits_a))


def quantile_midpoints(num_quantiles: int) -> jax.Array:
    """The quantile fractions QR-DQN's outputs estimate: `(2i + 1) / 2N`, `[N]`."""
    return (jnp.arange(num_quantiles, dtype=jnp.float32) + 0.5) / num_quantiles


def quantile_loss(
    quantiles_tm1: jax.Array,
    a_tm1: jax.Array,
    r_t: jax.Array,
    discount_t: jax.Array,
    quantiles_t: jax.Array,
    q_t_selector: jax.Array | None = None,
    huber_delta: float = 1.0,
) -> jax.Array:
    """QR-DQN's loss per transition `[B]`: the quantile Huber loss of the taken action's
    quantiles against `r_t + discount_t * theta'` of the greedy next action (rlax's
    `quantile_q_learning`).

    Args:
      quantiles_tm1: quantiles at the observed states `[B, A, N]`.
      a_tm1, r_t, discount_t: as in `categorical_loss`.
      quantiles_t: target-network quantiles at the bootstrap states `[B, A, N]`.
      q_t_selector: online Q-values `[B, A]` for double Q-learning; None picks the next
        action by the target's own mean quantile.
      huber_delta: the Huber threshold kappa (0: the plain quantile loss).
    """
    chex.assert_rank([quantiles_tm1, a_tm1, r_t, discount_t, quantiles_t], [3, 1, 1, 1, 3])
    taus = quantile_midpoints(quantiles_tm1.shape[-1])
    if q_t_selector is None:
        selector = quantiles_t
    else:  # rlax picks by the mean of the selector's quantiles: repeat the Q-values.
        selector = jnp.broadcast_to(q_t_selector[..., None], quantiles_t.shape)
    # rlax wants quantiles first: [N, A].
    return jax.vmap(
        lambda q_tm1, a, r, d, sel, q_t: rlax.quantile_q_learning(
            q_tm1.T, taus, a, r, d, sel.T, q_t.T, huber_param=huber_delta
        )
    )(quantiles_tm1, a_tm1, r_t, discount_t, selector, quantiles_t)


def n_step_targets(
    reward: jax.Array, terminated: jax.Array, truncated: jax.Array, gamma: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """n-step returns of windows `[B, n]` of consecutive steps of one env, each ending at the
    window's first episode end.

    For a window whose first episode end (terminated or truncated) is at step `d` (or
    `d = n - 1` if none), the return is `sum_{k<=d} gamma^k r_k`, bootstrapped with
    `gamma^(d+1) * (1 - terminated_d)` times the value of step `d`'s next observation (a
    truncated step's next observation is its episode's final one, so it bootstraps exactly;
    a terminated step does not bootstrap). Steps after `d` belong to the next episode and
    are ignored.

    Returns:
      `(returns[B], bootstrap_discounts[B], d[B])`.
    """
    chex.assert_rank([reward, terminated, truncated], 2)
    n = reward.shape[1]
    done = (terminated | truncated).astype(jnp.int32)
    live = (jnp.cumsum(done, axis=1) - done) == 0  # At or before the first episode end.
    last = jnp.where(jnp.any(done > 0, axis=1), jnp.argmax(done, axis=1), n - 1)
    powers = gamma ** jnp.arange(n, dtype=jnp.float32)
    returns = jnp.sum(jnp.where(live, powers * reward.astype(jnp.float32), 0.0), axis=1)
    ended = jnp.take_along_axis(terminated, last[:, None], axis=1)[:, 0]
    discounts = gamma ** (last + 1).astype(jnp.float32) * (1.0 - ended.astype(jnp.float32))
    return returns, discounts, last


def _windows(items: Any) -> Any:
    """A batch of single transitions `[B]` as windows of one step `[B, 1]`."""
    if items.reward.ndim == 1:
        return jax.tree.map(lambda x: x[:, None], items)
    return items


def apply_q_update(
    state: DQNState,
    grads: Any,
    tx: optax.GradientTransformation,
    config: DQNConfig,
    axis_name: str | None,
) -> tuple[DQNState, Any]:
    """The online network's optimizer step on `grads` (averaged over `axis_name`), then the
    target network's update (Polyak step `tau` every `target_update_period` steps); returns
    the new state and the averaged gradients."""
    grads = maybe_pmean(grads, axis_name)  # Averaged here: the metrics report their norm.
    params, opt_state = apply_gradients(grads, state.opt_state, state.params, tx)
    steps = state.steps + 1
    target_params = optax.periodic_update(
        optax.incremental_update(params, state.target_params, config.tau),
        state.target_params,
        steps,
        config.target_update_period,
    )
    return state.replace(
        params=params, target_params=target_params, opt_state=opt_state, steps=steps
    ), grads


def make(
    config: DQNConfig, *, num_updates: int | None = None, axis_name: str | None = None
) -> Agent:
    """Builds a value-based agent (DQN or any variant its config names).

    Args:
      config: the hyperparameters.
      num_updates: learner updates in the run (the horizon of a decaying `lr_schedule`).
      axis_name: a named device axis to average gradients over (data-parallel learner).
    """
    epsilon = optax.linear_schedule(
        config.epsilon_start, config.epsilon_end, config.epsilon_decay_steps
    )
    tx = config.make_optimizer(config.learning_rate, num_updates)
    distribution = config.distribution
    # A NumPy constant: making the agent must not start JAX's backend (the host loop sets
    # how it dispatches before it starts).
    atoms = np.linspace(config.v_min, config.v_max, config.num_atoms, dtype=np.float32)

    def q_values(out: jax.Array) -> jax.Array:
        """The network's output as Q-values `[..., A]`."""
        if distribution == "categorical":
            return jnp.sum(jax.nn.softmax(out, axis=-1) * atoms, axis=-1)
        if distribution == "quantile":
            return jnp.mean(out, axis=-1)
        return out

    def forward(state: DQNState, params: Any, obs: Any, key: jax.Array | None) -> jax.Array:
        rngs = {NOISE: key} if config.noisy and key is not None else None
        return state.network.apply(params, obs, rngs=rngs)

    name = type(config).__name__.removesuffix("Config")  # DQN, C51, QRDQN, Rainbow.

    def init(key: jax.Array, spec: EnvSpec) -> DQNState:
        num_actions = require_discrete(spec.action_space, name)
        shape = require_array_observations(spec.observation_space, name)
        network = QNetwork(
            config.make_torso(shape),
            num_actions,
            config.dueling,
            num_atoms=0 if distribution == "none" else config.num_atoms,
            noisy=config.noisy,
            noisy_sigma=config.noisy_sigma,
        )
        params = network.init(key, jnp.zeros((1,) + tuple(shape), spec.observation_space.dtype))
        steps = jnp.zeros((), jnp.int32)
        return DQNState(params, params, tx.init(params), steps, network, spec.action_mask)

    def act(
        state: DQNState, obs: jax.Array, key: jax.Array, deterministic: bool = False
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        if deterministic:  # Greedy, and noisy layers at their means.
            q = q_values(forward(state, state.params, obs, None))
            q = mask_illegal(q, obs, state.action_mask)
            return jnp.argmax(q, axis=-1).astype(jnp.int32), {}
        noise_key = None
        if config.noisy:
            key, noise_key = jax.random.split(key)
        q = q_values(forward(state, state.params, obs, noise_key))
        eps = epsilon(config.env_steps(state.steps))
        if state.action_mask:  # Greedy and random actions among the legal ones only.
            explore = distrax.Categorical(probs=epsilon_greedy_legal(q, obs, eps))
        else:
            explore = distrax.EpsilonGreedy(q, eps)
        action = explore.sample(seed=key)
        return action.astype(jnp.int32), {}

    def learn(state: DQNState, sample: Sample, key: jax.Array) -> tuple[DQNState, Metrics]:
        batch = _windows(sample.items)
        returns, discounts, last = n_step_targets(
            batch.reward, batch.terminated, batch.truncated, config.gamma
        )
        obs = jax.tree.map(lambda x: x[:, 0], batch.obs)
        action = batch.action[:, 0]
        next_obs = jax.tree.map(
            lambda x: jnp.take_along_axis(x, last.reshape((-1, 1) + (1,) * (x.ndim - 2)), axis=1)[
                :, 0
            ],
            batch.next_obs,
        )
        online_key, target_key, select_key = jax.random.split(key, 3)
        out_t = forward(state, state.target_params, next_obs, target_key)

        def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
            out_tm1 = forward(state, params, obs, online_key)
            selector = None
            if config.double_q:
                selector = jax.lax.stop_gradient(
                    q_values(forward(state, params, next_obs, select_key))
                )
            if state.action_mask:  # The bootstrap action among the legal ones only.
                selector = q_values(out_t) if selector is None else selector
                selector = mask_illegal(selector, next_obs, True)
            args = (out_tm1, action, returns, discounts, out_t)
            if distribution == "none":
                loss, td = dqn_loss(
                    *args,
                    selector,
                    sample.weights,
                    loss=config.loss,
                    huber_delta=config.huber_delta,
                )
                return loss, (td, q_values(out_tm1))
            if distribution == "categorical":
                losses = categorical_loss(*args, atoms, selector)
            else:
                losses = quantile_loss(*args, selector, config.huber_delta)
            # The distributional loss of each transition is its priority.
            return jnp.mean(sample.weights * losses), (losses, q_values(out_tm1))

        (loss, (priority, q_tm1)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_state, grads = apply_q_update(state, grads, tx, config, axis_name)
        metrics = {
            "loss": loss,
            "td_abs": jnp.mean(jnp.abs(priority)),
            "q_mean": jnp.mean(q_tm1),
            "grad_norm": optax.tree_utils.tree_norm(grads),
            "epsilon": epsilon(config.env_steps(state.steps)),
        }
        # Priorities stay per device: each device writes its own replay shard.
        return new_state, {**maybe_pmean(metrics, axis_name), PRIORITIES: jnp.abs(priority)}

    return Agent(init=init, act=feed_forward(act), learn=learn)


def recipe(config: DQNConfig, context: Context) -> Recipe:
    """The data path (uniform or prioritised replay of windows of `n_step` steps, one shard
    per device) and schedule (one gradient step every `train_frequency` vector steps)."""
    data = config.replay(context.num_devices, context.num_updates, sequence_length=config.n_step)
    agent = make(config, num_updates=context.num_updates, axis_name=DEVICE_AXIS)
    schedule = Schedule(rollout_length=config.train_frequency)
    return Recipe(agent, data, schedule, config.num_envs, config.gamma)
