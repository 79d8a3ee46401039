"""Proximal Policy Optimisation (Schulman et al., 2017), with GAE (Schulman et al., 2016) and
the clipped surrogate objective from rlax; feed-forward, or recurrent (an LSTM or GRU core,
trained by backpropagation through each rollout).

The action space chooses the policy: categorical for `Discrete` actions; for a bounded `Box`
(feed-forward only), a diagonal Gaussian with a state-independent log-std over the
normalised actions `[-1, 1]^A`, whose samples are clipped to `[-1, 1]` and rescaled to the
bounds before the env sees them. The unclipped sample is kept in the rollout's extras
(`raw_action`), so the ratio is taken on what the policy really drew."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import chex
import distrax
import flax.linen as nn
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import optax
import rlax
from flax import serialization, struct
from purerl.agents.optimizers import apply_gradients
from purerl.agents.options import NetworkOptions, OptimizerOptions
from purerl.core import (
    DEVICE_AXIS,
    Agent,
    Context,
    EnvSpec,
    Metrics,
    Recipe,
    Transition,
    mask_illegal,
    maybe_pmean,
    per_device,
    require_array_observations,
    require_box,
    require_discrete,
    require_positive_fields,
    to_bounds,
    unroll_episodes,
)
from purerl.networks import ActorCritic, RecurrentActorCritic, is_recurrent
from purerl.networks.heads import stack_torsos, unstack_torsos
from purerl.networks.torsos import zero_carry
from purerl.replay import Schedule, on_policy
from purerl.replay.base import flatten_time


@dataclasses.dataclass(frozen=True, kw_only=True)
class PPOConfig(NetworkOptions, OptimizerOptions):
    """PPO hyperparameters (with the network and optimizer settings of `NetworkOptions` and
    `OptimizerOptions`; by default Adam with eps 1e-5, its step size decaying linearly to 0
    over the run as in the PPO paper, gradients clipped to norm 0.5, a tanh MLP).

    Attributes:
      learning_rate: the optimizer's step size (the schedule's start).
      gamma: discount factor.
      gae_lambda: GAE's lambda.
      clip_eps: the surrogate's ratio clip, also the value clip.
      clip_value: clip the value prediction around the old value, as in the PPO baselines.
      ent_coef: weight of the entropy bonus.
      vf_coef: weight of the value loss.
      normalize_advantages: standardise advantages in each minibatch (statistics over
        all devices).
      update_epochs: passes over each rollout.
      num_minibatches: minibatches per pass; must divide `num_envs * num_steps` (for a
        recurrent torso, `num_envs` per device: its minibatches are whole env sequences).
      num_envs: environments stepped in parallel, over all devices.
      num_steps: steps per environment in each rollout.
      log_std_init: continuous actions: the Gaussian policy's log-std at the start (in
        units of half the action range).
      stack_torsos: evaluate the actor's and critic's torsos (MLPs of one shape) as one
        stacked network, one batched matmul per layer: fewer kernels per update (86 against
        99 per minibatch step at Rejax's CartPole settings), meant for accelerators, where a
        kernel launch costs more than a small matmul (not yet measured on one). On a CPU it
        was slower (90-127 µs against 61-68 µs per minibatch step), so it is off.
    """

    action_spaces = ("discrete", "continuous")  # Not an option: the spaces it acts in.
    # Not options: what the bare command uses where no flag sets it (named when applied). The
    # defaults are CartPole's; continuous control wants longer rollouts, more epochs, no
    # entropy bonus and more steps (the PPO page of the docs has the runs that chose them).
    presets = {
        "continuous": dict(
            total_timesteps=1_000_000,
            num_envs=16,
            num_steps=128,
            update_epochs=10,
            num_minibatches=32,
            learning_rate=3e-4,
            ent_coef=0.0,
        ),
        "Pendulum-v1": dict(gamma=0.95),
        "MountainCarContinuous-v0": dict(gamma=0.999, log_std_init=1.0),
    }

    learning_rate: float = 2.5e-4
    optimizer: str = "adam(eps=1e-5)"
    lr_schedule: str = "linear"
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
    activation: str = "tanh"
    num_envs: int = 8
    num_steps: int = 64
    log_std_init: float = 0.0
    stack_torsos: bool = False

    def __post_init__(self) -> None:
        self.check_optimizer_options()
        self.check_network(recurrent_ok=True)
        require_positive_fields(self, "num_envs", "num_steps", "update_epochs", "num_minibatches")
        if self.recurrent:
            if self.num_envs % self.num_minibatches:
                raise ValueError(
                    f"PPOConfig.num_minibatches ({self.num_minibatches}) must divide num_envs "
                    f"({self.num_envs}): a recurrent PPO's minibatches are whole env sequences."
                )
        elif self.rollout_size % self.num_minibatches:
            raise ValueError(
                f"PPOConfig.num_minibatches ({self.num_minibatches}) must divide the rollout "
                f"of num_envs * num_steps = {self.num_envs} * {self.num_steps} = "
                f"{self.rollout_size} transitions."
            )

    @property
    def recurrent(self) -> bool:
        return is_recurrent(self.torso)

    @property
    def rollout_size(self) -> int:
        """Transitions per rollout, over all devices."""
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.rollout_size // self.num_minibatches


@dataclasses.dataclass(frozen=True, kw_only=True)
class A2CConfig(PPOConfig):
    """A2C (Mnih et al., 2016's synchronous advantage actor-critic) as PPO's learner: one
    gradient step on each whole rollout. The clipped surrogate's gradient at ratio 1 (the
    policy that acted, before any step) is exactly the policy gradient `-grad log pi * A`,
    and the clipped value loss equals the plain one there, so no term is clipped. Short
    rollouts, many envs, n-step returns (`gae_lambda=1`) and no advantage normalisation, as
    in A2C; a larger step size than PPO's (the runs that chose it are on the A2C page of the
    docs, `docs/agents/a2c.md`)."""

    presets = {}  # PPO's continuous preset takes several epochs; A2C takes one step.

    learning_rate: float = 2e-3
    update_epochs: int = 1
    num_minibatches: int = 1
    num_envs: int = 16
    num_steps: int = 5
    gae_lambda: float = 1.0
    normalize_advantages: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.update_epochs != 1 or self.num_minibatches != 1:
            raise ValueError(
                "A2C takes one gradient step per rollout (--update-epochs 1 --num-minibatches "
                f"1); got {self.update_epochs} epochs x {self.num_minibatches} minibatches. "
                "For more, use ppo."
            )


RAW_ACTION = "raw_action"  # Continuous PPO's extras: the Gaussian sample before clipping.


@struct.dataclass
class PPOState:
    params: Any  # Actor-critic parameters.
    opt_state: optax.OptState
    steps: jax.Array  # [] int32, learner updates (rollouts learned from) so far.
    network: nn.Module = struct.field(pytree_node=False)
    low: jax.Array | None = None  # [A] a Box action space's bounds; None for Discrete.
    high: jax.Array | None = None
    # Observations end with the legal-action mask (EnvSpec.action_mask).
    action_mask: bool = struct.field(pytree_node=False, default=False)


def _data_fields(state: PPOState) -> list[str]:
    return [f.name for f in dataclasses.fields(state) if f.metadata.get("pytree_node", True)]


def _state_dict(state: PPOState) -> dict[str, Any]:
    return {name: serialization.to_state_dict(getattr(state, name)) for name in _data_fields(state)}


def _from_state_dict(target: PPOState, saved: dict[str, Any]) -> PPOState:
    """Flax's restore of a `PPOState` (how a saved run's `policy.msgpack` loads: `load_policy`,
    `--init-from`), which also reads an actor-critic saved with its torsos in the other
    layout, stacked or apart (`torso_layout`)."""
    saved = torso_layout(target, saved)
    names = _data_fields(target)
    if set(saved) != set(names):
        raise ValueError(
            f"A saved PPOState has the fields {sorted(saved)} where {sorted(names)} belong, at "
            f"path {serialization.current_path()}."
        )
    return target.replace(
        **{n: serialization.from_state_dict(getattr(target, n), saved[n], name=n) for n in names}
    )


def torso_layout(target: PPOState, saved: dict[str, Any]) -> dict[str, Any]:
    """A saved `PPOState`'s state dict in `target`'s layout of the actor-critic's torsos,
    where it has the other one: apart (`actor_torso`, `critic_torso`: the default) or
    stacked (`torsos`: `PPOConfig.stack_torsos`). The parameters are converted
    (`networks.heads.stack_torsos`, `unstack_torsos`), wherever the optimizer state mirrors
    them too, and the optimizer's flat vectors (`optax.flatten`) are permuted to the new
    order of the parameters. Anything else passes unchanged. Leaves may carry leading axes
    (seeds) before each parameter's own, as many as `target.steps` has."""
    had, wants = saved.get("params", {}).get("params", {}), target.params.get("params", {})
    if "actor_torso" in had and "torsos" in wants:
        marker, convert, back = "actor_torso", stack_torsos, unstack_torsos
    elif "torsos" in had and "actor_torso" in wants:
        marker, convert, back = "torsos", unstack_torsos, stack_torsos
    else:
        return saved
    lead = jnp.ndim(target.steps)
    example = back(jax.tree.map(lambda x: x[(0,) * lead], target.params))  # One seed, as saved.
    leaves, tree = jax.tree.flatten(example)
    ends = np.cumsum([np.size(x) for x in leaves])
    indices = [
        np.arange(e - np.size(x), e).reshape(np.shape(x)) for e, x in zip(ends, leaves, strict=True)
    ]
    moved = jax.tree.leaves(convert(jax.tree.unflatten(tree, indices)))
    order = np.concatenate([np.ravel(x) for x in moved])

    def convert_state(node: Any) -> Any:
        if isinstance(node, dict):
            if isinstance(node.get("params"), dict) and marker in node["params"]:
                return convert(node, axis=lead)
            return {key: convert_state(value) for key, value in node.items()}
        if np.ndim(node) == lead + 1 and np.shape(node)[-1] == order.size:
            return np.asarray(node)[..., order]
        return node

    params = convert(saved["params"], axis=lead)
    return {**saved, "params": params, "opt_state": convert_state(saved["opt_state"])}


serialization.register_serialization_state(PPOState, _state_dict, _from_state_dict, override=True)


def fold_episode_ends(
    r_t: jax.Array, terminated_t: jax.Array, truncated_t: jax.Array, v_t: jax.Array, gamma: float
) -> tuple[jax.Array, jax.Array]:
    """Rewards and discounts `[T]` of a rollout of auto-resetting envs, for a backward
    recursion (GAE, V-trace) that must not read across an episode end: a terminated step's
    discount is 0; a truncated step's too, its reward taking `gamma * v(final observation)`
    (`v_t` there), so it still bootstraps from where the episode was cut."""
    terminated_t = terminated_t.astype(jnp.float32)
    truncated_t = truncated_t.astype(jnp.float32) * (1.0 - terminated_t)
    r_t = r_t + gamma * truncated_t * v_t
    return r_t, gamma * (1.0 - jnp.maximum(terminated_t, truncated_t))


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
    r_t, discount_t = fold_episode_ends(r_t, terminated_t, truncated_t, v_t, gamma)
    values = jnp.concatenate([v_tm1, v_t[-1:]])
    return rlax.truncated_generalized_advantage_estimation(r_t, discount_t, gae_lambda, values)


Forward = Callable[[Any, Transition], tuple[distrax.Categorical, jax.Array]]


def ppo_loss(
    params: Any,
    forward: Forward,
    batch: Transition,
    advantages: jax.Array,
    targets: jax.Array,
    *,
    clip_eps: float,
    clip_value: bool,
    vf_coef: float,
    ent_coef: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The PPO loss on a minibatch: clipped surrogate + value loss - entropy bonus.

    `forward(params, batch) -> (pi, value)` evaluates the policy and value on the batch's
    observations (for a recurrent network, by unrolling it over the batch's sequences).
    `batch.extras` holds the behaviour policy's `log_prob` and `value`; `advantages` (already
    normalised if wanted) and value `targets` share their shape, `[N]` or `[T, N]`.
    """
    chex.assert_equal_shape([advantages, targets, batch.extras["value"]])
    pi, value = forward(params, batch)
    # Continuous actions: the policy's own sample, before it was clipped to the bounds.
    log_prob = pi.log_prob(batch.extras.get(RAW_ACTION, batch.action))
    ratio = jnp.exp(log_prob - batch.extras["log_prob"])
    pg_loss = rlax.clipped_surrogate_pg_loss(ratio.reshape(-1), advantages.reshape(-1), clip_eps)

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


def unroll(
    network: nn.Module, params: Any, batch: Transition, initial: Any
) -> tuple[tuple[distrax.Categorical, jax.Array], Any]:
    """A recurrent actor-critic over a rollout `[T, B]`, from the carry its first step acted
    with (`batch.carry[0]`), reset to `initial` after each step that ended an episode, as the
    loops reset it while acting.

    Returns:
      `(pi[T, B], value[T, B])` and the carries after each step (before any reset).
    """
    done = jnp.logical_or(batch.terminated, batch.truncated)
    start = jax.tree.map(lambda x: x[0], batch.carry)

    def step(carry: Any, obs: Any) -> tuple[Any, Any]:
        carry, (pi, value) = network.apply(params, carry, obs)
        return carry, (pi.logits, value)

    (logits, value), after = unroll_episodes(step, start, batch.obs, done, initial)
    return (distrax.Categorical(logits=logits), value), after


def legal_policy(forward: Callable[..., Any]) -> Callable[..., Any]:
    """`forward(params, batch) -> (pi, value)` with the actions each `batch.obs` marks
    illegal taken out of `pi` (`EnvSpec.action_mask`), as acting took them out."""

    def masked(params: Any, batch: Transition) -> tuple[distrax.Categorical, jax.Array]:
        pi, value = forward(params, batch)
        return distrax.Categorical(logits=mask_illegal(pi.logits, batch.obs, True)), value

    return masked


def permutations(key: jax.Array, count: int, size: int) -> jax.Array:
    """`count` independent, uniformly random permutations of `range(size)`, `[count, size]`
    int32: JAX's shuffle (rounds of sorting by random keys, ties kept in the order of the
    round before), with each element's position packed into the low bits of its 32-bit
    key, so each round is one sort of one uint32 array. XLA's CPU sort takes a plain array
    with its own fast comparison, where the key-value sort of `jax.random.permutation`
    calls a compiled comparator per comparison (several times slower at PPO's sizes).
    Enough rounds that a tie in every round is as unlikely as JAX's own criterion wants."""
    index_bits = max(1, (size - 1).bit_length())
    if index_bits > 16:  # Too few random bits left in each key: JAX's own shuffle.
        return jax.vmap(lambda k: jax.random.permutation(k, size))(jax.random.split(key, count))
    random_bits = 32 - index_bits
    rounds = max(1, math.ceil(3 * math.log(size) / (random_bits * math.log(2))))
    position = jnp.arange(size, dtype=jnp.uint32)
    low = jnp.uint32(2**index_bits - 1)
    bits = jax.random.bits(key, (rounds, count, size), jnp.uint32)  # One draw for all rounds.
    perm = None
    for round_bits in bits:
        order = jnp.sort((round_bits & ~low) | position, axis=-1) & low
        perm = order if perm is None else jnp.take_along_axis(perm, order, axis=-1)
    return perm.astype(jnp.int32)


def _minibatches(x: jax.Array, perm: jax.Array, num: int, axis: int) -> jax.Array:
    """`x` shuffled by `perm` along `axis` and cut into `num` minibatches, stacked first."""
    x = jnp.take(x, perm, axis=axis)
    x = x.reshape(x.shape[:axis] + (num, -1) + x.shape[axis + 1 :])
    return jnp.moveaxis(x, axis, 0)


def actor_critic(
    config: Any, tx: optax.GradientTransformation, name: str = "PPO"
) -> tuple[Callable[..., PPOState], Callable[..., Any], Callable[[int], Any]]:
    """The `(init, act, initial_carry)` PPO, A2C and IMPALA share: an actor-critic network
    (categorical, or Gaussian for a `Box` action space; recurrent if `config.recurrent`) and
    acting that records the behaviour policy's `log_prob` and `value` in the extras.

    Args:
      config: a config with `NetworkOptions`, `log_std_init` and `recurrent`.
      tx: the optimizer whose state `init` creates.
      name: the agent's name in error messages.
    """
    recurrent = config.recurrent

    def init(key: jax.Array, spec: EnvSpec) -> PPOState:
        shape = require_array_observations(spec.observation_space, name)
        low = high = None
        if isinstance(spec.action_space, gymnasium.spaces.Box):
            low, high = require_box(spec.action_space, name)
            if recurrent:
                raise ValueError(
                    f"{name} with a recurrent torso has a categorical policy only, and the action "
                    f"space is {spec.action_space}; use --torso mlp (or auto) for continuous "
                    "actions."
                )
            num_actions = int(low.shape[0])
        else:
            num_actions = require_discrete(spec.action_space, name)

        obs = jnp.zeros((1,) + tuple(shape), spec.observation_space.dtype)
        if recurrent:
            network = RecurrentActorCritic(config.make_torso(shape), num_actions)
            params = network.init(key, network.initialize_carry(1), obs)
        else:
            network = ActorCritic(
                config.make_torso(shape),
                config.make_torso(shape),
                num_actions,
                continuous=low is not None,
                log_std_init=config.log_std_init,
                stack=config.stack_torsos,
            )
            params = network.init(key, obs)
        if config.stack_torsos and not (not recurrent and network.stacked):
            raise ValueError(
                "--stack-torsos stacks two MLP torsos of one shape; this run's torso is "
                f"{config.make_torso(shape).__class__.__name__}. Leave --stack-torsos off."
            )
        bounds = (None, None) if low is None else (jnp.asarray(low), jnp.asarray(high))
        return PPOState(
            params, tx.init(params), jnp.zeros((), jnp.int32), network, *bounds, spec.action_mask
        )

    def initial_carry(batch_size: int) -> Any:
        if not recurrent:
            return ()
        return zero_carry(config.torso, config.hidden_sizes[-1], batch_size)

    def act(
        state: PPOState, carry: Any, obs: jax.Array, key: jax.Array, deterministic: bool = False
    ) -> tuple[jax.Array, Any, dict[str, jax.Array]]:
        if recurrent:
            carry, (pi, value) = state.network.apply(state.params, carry, obs)
        else:
            pi, value = state.network.apply(state.params, obs)
        if state.low is not None:  # A Gaussian over [-1, 1]^A, clipped and rescaled.
            if deterministic:
                return to_bounds(jnp.clip(pi.mode(), -1, 1), state.low, state.high), carry, {}
            raw = pi.sample(seed=key)
            action = to_bounds(jnp.clip(raw, -1.0, 1.0), state.low, state.high)
            extras = {"log_prob": pi.log_prob(raw), "value": value, RAW_ACTION: raw}
            return action, carry, extras
        if state.action_mask:
            pi = distrax.Categorical(logits=mask_illegal(pi.logits, obs, True))
        if deterministic:
            return pi.mode().astype(jnp.int32), carry, {}
        action, log_prob = sample_categorical(pi, key)
        return action, carry, {"log_prob": log_prob, "value": value}

    return init, act, initial_carry


def sample_categorical(pi: distrax.Categorical, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The action `pi.sample(seed=key)` draws (the same one for the same key) and its
    log-probability, without distrax's check that the probabilities are finite, which is
    three more kernels in every env step of a rollout; logits that are not finite surface as
    a NaN loss (the run stops with an error that says so), not as action -1."""
    logits = pi.logits  # distrax's, normalised: what its sampling draws from.
    action = jax.random.categorical(key, logits, shape=(1,) + logits.shape[:-1])[0]
    log_prob = jnp.take_along_axis(logits, action[..., None], axis=-1)[..., 0]
    return action.astype(jnp.int32), log_prob


def make(
    config: PPOConfig, *, num_updates: int | None = None, axis_name: str | None = None
) -> Agent:
    """Builds a PPO agent.

    Args:
      config: the hyperparameters.
      num_updates: learner updates (rollouts) in the whole run; the horizon of a decaying
        `lr_schedule`.
      axis_name: a named device axis to average gradients and advantage statistics
        over (data-parallel learner).
    """
    steps_per_update = config.update_epochs * config.num_minibatches
    total = num_updates * steps_per_update if num_updates else None
    tx = optax.flatten(config.make_optimizer(config.learning_rate, total))
    recurrent = config.recurrent

    init, act, initial_carry = actor_critic(config, tx)

    def normalize(adv: jax.Array) -> jax.Array:
        mean = maybe_pmean(jnp.mean(adv), axis_name)
        var = maybe_pmean(jnp.mean(jnp.square(adv - mean)), axis_name)
        return (adv - mean) / (jnp.sqrt(var) + 1e-8)

    def learn(state: PPOState, batch: Transition, key: jax.Array) -> tuple[PPOState, Metrics]:
        """One PPO update on a time-major rollout `[T, B]`."""
        chex.assert_rank(batch.reward, 2)
        network = state.network
        if recurrent:
            # v(next obs) with the carry after each step (the ended episode's, where one ended).
            _, after = unroll(network, state.params, batch, initial_carry(batch.reward.shape[1]))
            _, (_, v_next) = network.apply(
                state.params, flatten_time(after), flatten_time(batch.next_obs)
            )
            v_next = v_next.reshape(batch.reward.shape)
        else:
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
        data = (batch, advantages, targets)

        if recurrent:
            # Minibatches of whole env sequences `[T, B / M]`, unrolled from their first carry.
            def forward(params: Any, mb: Transition) -> tuple[Any, jax.Array]:
                return unroll(network, params, mb, initial_carry(mb.reward.shape[1]))[0]

            batch_axis = 1
        else:

            def forward(params: Any, mb: Transition) -> tuple[Any, jax.Array]:
                return network.apply(params, mb.obs)

            data = flatten_time(data)
            batch_axis = 0
        if state.action_mask:
            forward = legal_policy(forward)
        size = data[1].shape[batch_axis]  # This device's envs (recurrent) or transitions.
        if size % config.num_minibatches:
            raise ValueError(
                f"PPO: num_minibatches ({config.num_minibatches}) must divide the "
                f"{size} {'envs' if recurrent else 'transitions'} of each device's rollout."
            )

        def minibatch_step(carry, minibatch):
            params, opt_state = carry
            mb, adv, tgt = minibatch
            if config.normalize_advantages:
                adv = normalize(adv)
            grads, info = jax.grad(ppo_loss, has_aux=True)(
                params,
                forward,
                mb,
                adv,
                tgt,
                clip_eps=config.clip_eps,
                clip_value=config.clip_value,
                vf_coef=config.vf_coef,
                ent_coef=config.ent_coef,
            )
            return apply_gradients(grads, opt_state, params, tx, axis_name), info

        def epoch(carry, perm):
            shuffled = jax.tree.map(
                lambda x: _minibatches(x, perm, config.num_minibatches, batch_axis), data
            )
            return jax.lax.scan(minibatch_step, carry, shuffled)

        # Every epoch's shuffle in one draw before the loop.
        perms = permutations(key, config.update_epochs, size)
        (params, opt_state), info = jax.lax.scan(epoch, (state.params, state.opt_state), perms)
        metrics = jax.tree.map(jnp.mean, info)
        metrics["value_mean"] = jnp.mean(batch.extras["value"])
        new_state = state.replace(params=params, opt_state=opt_state, steps=state.steps + 1)
        return new_state, maybe_pmean(metrics, axis_name)

    return Agent(init=init, act=act, learn=learn, initial_carry=initial_carry)


def recipe(config: PPOConfig, context: Context) -> Recipe:
    """PPO's data path (each update learns from the rollout just collected) and schedule."""
    # The device loop gives each device its own envs; the host loop steps them all on the
    # host and splits each rollout over the devices to learn.
    per_dev = per_device(config.num_envs, "--num-envs", context.num_devices)
    units = per_dev if config.recurrent else per_dev * config.num_steps
    if units % config.num_minibatches:
        raise ValueError(
            f"--num-minibatches ({config.num_minibatches}) must divide each device's rollout of "
            + (
                f"{per_dev} envs."
                if config.recurrent
                else f"{per_dev} envs x {config.num_steps} steps."
            )
        )
    agent = make(config, num_updates=context.num_updates, axis_name=DEVICE_AXIS)
    schedule = Schedule(rollout_length=config.num_steps)
    return Recipe(agent, on_policy(), schedule, config.num_envs, config.gamma)
