"""The types every part of purerl shares: agents, environments, replay and the loops import
them from here, so that none of those packages depends on another for its vocabulary.

See `docs/architecture.md` for how they fit together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from purerl.replay.base import DataPath, Schedule

PRNGKey = jax.Array
AgentState = Any  # A pytree: params, target params, optax state, counters.
Carry = Any  # An agent's per-env recurrent state, leaves [B, ...]; () for feed-forward agents.
Observation = Any  # An array (or pytree of arrays) with a leading batch axis.
Action = jax.Array
ActInfo = dict[str, jax.Array]
Batch = Any
Metrics = dict[str, jax.Array]

DEVICE_AXIS = "device"  # The mesh axis data-parallel learners average over.
PRIORITIES = "priorities"  # The key under which `learn` hands per-sample priorities back.


class EnvSpec(NamedTuple):
    """What an agent needs to know about an environment to build its networks.

    Attributes:
      observation_space: the observations the agent sees.
      action_space: the actions it takes.
      action_mask: whether each observation (a vector) ends with the legal-action mask of
        a `Discrete(n)` action space: its last `n` entries, 1.0 where the action is legal
        (Jumanji and Pgx say which actions are; see `legal_actions`).
    """

    observation_space: gymnasium.spaces.Space
    action_space: gymnasium.spaces.Space
    action_mask: bool = False


# What an illegal action's logit (or Q-value) becomes: finite, unlike -inf, so that its
# probability is exactly 0 while entropies and KL terms (0 * log 0) stay finite.
ILLEGAL = -1e9


def legal_actions(obs: jax.Array, num_actions: int) -> jax.Array:
    """The legal-action mask `[..., A]` (bool) an observation `[..., D]` of an environment
    with `EnvSpec.action_mask` ends with."""
    return obs[..., -num_actions:] > 0.5


def mask_illegal(values: jax.Array, obs: jax.Array, masked: bool) -> jax.Array:
    """`values` `[..., A]` (logits or Q-values) with the actions `obs` marks illegal set to
    `ILLEGAL`, so that neither a softmax nor an argmax picks them; unchanged when `masked`
    (the agent's `EnvSpec.action_mask`) is False."""
    if not masked:
        return values
    return jnp.where(legal_actions(obs, values.shape[-1]), values, ILLEGAL)


def epsilon_greedy_legal(q: jax.Array, obs: jax.Array, epsilon: jax.Array) -> jax.Array:
    """The probabilities `[B, A]` of epsilon-greedy acting on `q` `[B, A]` among the legal
    actions `obs` marks: the greedy legal action with probability `1 - epsilon`, else a
    uniformly random legal one. An observation with no legal action (a game already over)
    explores over every action."""
    legal = legal_actions(obs, q.shape[-1])
    legal = jnp.logical_or(legal, jnp.logical_not(jnp.any(legal, axis=-1, keepdims=True)))
    greedy = jax.nn.one_hot(jnp.argmax(jnp.where(legal, q, ILLEGAL), axis=-1), q.shape[-1])
    uniform = legal / jnp.sum(legal, axis=-1, keepdims=True)
    return (1.0 - epsilon) * greedy + epsilon * uniform


class InitFn(Protocol):
    def __call__(self, key: PRNGKey, spec: EnvSpec) -> AgentState: ...


class ActFn(Protocol):
    def __call__(
        self,
        state: AgentState,
        carry: Carry,
        obs: Observation,
        key: PRNGKey,
        deterministic: bool = False,
    ) -> tuple[Action, Carry, ActInfo]: ...


class LearnFn(Protocol):
    def __call__(
        self, state: AgentState, batch: Batch, key: PRNGKey
    ) -> tuple[AgentState, Metrics]: ...


def no_carry(batch_size: int) -> Carry:
    """The carry of a feed-forward agent: nothing."""
    del batch_size
    return ()


class Agent(NamedTuple):
    """An agent as pure functions, in the style of `optax.GradientTransformation`.

    Attributes:
      init: `(key, spec) -> state`, the initial agent state (a pytree).
      act: `(state, carry, obs[B, ...], key, deterministic=False) -> (action[B], carry, info)`;
        jittable and vmappable. `carry` is the per-env recurrent state (`()` for a
        feed-forward agent, whose `act` is usually written without it and wrapped with
        `feed_forward`). `deterministic=True` is the greedy / mean policy of evaluation.
        `info` holds what `learn` needs later (log-probabilities, values, ...).
      learn: `(state, batch, key) -> (state, metrics)`; one gradient step on what the
        agent's data path sampled. When made with an `axis_name`, gradients are averaged
        over that named device axis, so the same function is the single-device and the
        data-parallel learner. Scalar metrics are logged; a `[N]` array under
        `PRIORITIES` is written back to a prioritised data path.
      initial_carry: `(batch_size) -> carry`, the carry at the start of an episode; the
        loops put it back wherever an episode ends.
    """

    init: InitFn
    act: ActFn
    learn: LearnFn
    initial_carry: Callable[[int], Carry] = no_carry


class Context(NamedTuple):
    """What a recipe is sized for, given by the loop that trains it.

    Attributes:
      num_devices: devices the learner is data-parallel over (each holds its own share of
        the envs on the device loop, and its own replay shard).
      num_updates: learner updates in the whole run (the horizon of decaying schedules).
    """

    num_devices: int = 1
    num_updates: int = 1


class Recipe(NamedTuple):
    """Everything a loop needs to train an agent: the training contract of purerl.

    The built-in agents make theirs with `recipe(config, context)`; an agent of your own is
    trained from one (`purerl.train(Recipe(agent, data, schedule, num_envs=8))`).

    Attributes:
      agent: the agent; its `learn` averages gradients over `DEVICE_AXIS` to train
        data-parallel.
      data: its data path (`purerl.replay.on_policy()`, `uniform_replay(...)`, ...), sized per
        device. Whether the host loop may act ahead of learning follows from it: an
        on-policy path learns only from the rollout just acted, a replay path may learn
        from experience a slightly older policy collected (`DataPath.on_policy`).
      schedule: rollout length, gradient steps per update, warm-up steps.
      num_envs: environments over all devices; the loops split them per device.
      discount: the agent's discount, which `--normalize-rewards` scales rewards by.
    """

    agent: Agent
    data: DataPath
    schedule: Schedule
    num_envs: int
    discount: float = 0.99

    @property
    def env_steps_per_update(self) -> int:
        """Env steps (per run, over all devices) between two learner updates."""
        return self.num_envs * self.schedule.rollout_length

    @property
    def acts_ahead(self) -> bool:
        """Whether acting may run ahead of learning (a replay data path)."""
        return not self.data.on_policy


def feed_forward(
    act: Callable[..., tuple[Action, ActInfo]],
) -> ActFn:
    """Turns a feed-forward `act(state, obs, key, deterministic=False) -> (action, info)` into
    the agent API's `act`, which passes the (empty) carry through."""

    def act_with_carry(
        state: AgentState, carry: Carry, obs: Observation, key: PRNGKey, deterministic: bool = False
    ) -> tuple[Action, Carry, ActInfo]:
        action, info = act(state, obs, key, deterministic)
        return action, carry, info

    return act_with_carry


def reset_carry(initial: Carry, carry: Carry, done: jax.Array) -> Carry:
    """`carry` with the rows of envs whose episode ended (`done[B]`) set back to `initial`."""

    def pick(init: jax.Array, current: jax.Array) -> jax.Array:
        mask = done.reshape(done.shape + (1,) * (current.ndim - 1))
        return jnp.where(mask, init, current)

    return jax.tree.map(pick, initial, carry)


def unroll_episodes(
    step: Callable[[Carry, Any], tuple[Carry, Any]],
    start: Carry,
    obs: Any,
    done: jax.Array,
    initial: Carry,
) -> tuple[Any, Any]:
    """`step(carry, obs_t) -> (carry, out_t)` scanned over time-major `obs[T, B, ...]` from
    `start`, the carry reset to `initial` after each step that ended an episode (`done[T,
    B]`), as the loops reset it while acting. Returns the outputs `[T, ...]` and the carries
    after each step (before any reset)."""
    first = jnp.concatenate([jnp.zeros_like(done[:1]), done[:-1]])

    def body(carry: Carry, inputs: tuple[Any, jax.Array]) -> tuple[Carry, Any]:
        carry, out = step(reset_carry(initial, carry, inputs[1]), inputs[0])
        return carry, (out, carry)

    _, (outs, after) = jax.lax.scan(body, start, (obs, first))
    return outs, after


class Transition(NamedTuple):
    """One environment step, the record that flows through `lax.scan` and into replay.

    Leaves carry whatever leading axes the caller gives them (`[T, B]` for a rollout,
    `[N]` for a replay sample).

    Attributes:
      obs: the observation the action was chosen on.
      action: the action taken.
      reward: the reward received.
      terminated: the episode truly ended (no bootstrap from `next_obs`).
      truncated: the episode was cut by a time limit (bootstrap from `next_obs`).
      next_obs: the observation after the step; the ended episode's last one when the
        environment auto-reset (its `info["final_observation"]`).
      extras: what `act` returned alongside the action (log-probs, values, ...).
      carry: the agent's carry the action was chosen with (`()` for feed-forward agents);
        a recurrent learner starts its unroll from the first step's.
    """

    obs: Observation
    action: Action
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_obs: Observation
    extras: ActInfo
    carry: Carry = ()


class EpisodeStats(NamedTuple):
    """Finished episodes in one update, summed over envs, steps and devices."""

    return_sum: jax.Array  # [] float32
    length_sum: jax.Array  # [] float32
    count: jax.Array  # [] float32


def maybe_pmean(tree: Any, axis_name: str | None) -> Any:
    """Averages `tree` over the named device axis, or returns it unchanged without one.

    Its leaves travel as one vector per dtype: every collective is a round trip between the
    devices, which between hosts (gloo, or a network) costs far more than the copy."""
    if axis_name is None or jax.lax.axis_size(axis_name) == 1:
        return tree
    leaves, treedef = jax.tree.flatten(tree)
    if len(leaves) < 2:
        return jax.lax.pmean(tree, axis_name)
    groups: dict[Any, list[int]] = {}
    for i, leaf in enumerate(leaves):
        groups.setdefault(jnp.result_type(leaf), []).append(i)
    out = list(leaves)
    for members in groups.values():
        flat = jnp.concatenate([jnp.ravel(leaves[i]) for i in members])
        flat = jax.lax.pmean(flat, axis_name)
        offsets = np.cumsum([0] + [np.size(leaves[i]) for i in members])
        for i, start, stop in zip(members, offsets[:-1], offsets[1:], strict=True):
            out[i] = flat[start:stop].reshape(jnp.shape(leaves[i]))
    return jax.tree.unflatten(treedef, out)


def require_positive(value: Any, what: str) -> int:
    """`value` as an `int`, or a clear error unless it is at least 1 (`what` names it)."""
    if int(value) < 1:
        raise ValueError(f"{what} must be a positive integer; got {value}.")
    return int(value)


def require_positive_fields(config: Any, *fields: str) -> None:
    """A clear error unless each of `config`'s `fields` is a positive integer (for a config's
    `__post_init__`)."""
    for field in fields:
        require_positive(getattr(config, field), f"{type(config).__name__}.{field}")


def require_array_observations(space: gymnasium.spaces.Space, agent: str) -> tuple[int, ...]:
    """The shape of an observation space of arrays (a `Box`, ...), or a clear error."""
    if space.shape is None:
        raise ValueError(f"{agent} needs array observations; got {space}.")
    return tuple(space.shape)


def require_discrete(space: gymnasium.spaces.Space, agent: str) -> int:
    """Returns the number of actions of a `Discrete` space, or a clear error."""
    if not isinstance(space, gymnasium.spaces.Discrete):
        raise ValueError(
            f"{agent} needs a discrete action space (gymnasium.spaces.Discrete), but the "
            f"environment's action space is {space}. Use an agent for continuous actions, "
            "or an environment with discrete actions."
        )
    if int(space.start) != 0:
        raise ValueError(f"{agent} needs actions numbered from 0; got {space}.")
    return int(space.n)


def require_box(space: gymnasium.spaces.Space, agent: str) -> tuple[np.ndarray, np.ndarray]:
    """The finite `(low, high)` bounds of a one-dimensional `Box` action space, or a clear
    error."""
    if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 1:
        raise ValueError(
            f"{agent} needs a continuous action space (a one-dimensional gymnasium.spaces.Box), "
            f"but the environment's action space is {space}. Use an agent for discrete actions, "
            "or an environment with continuous actions."
        )
    low, high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(
            f"{agent} rescales its actions to the action space's bounds, which must be finite; "
            f"got {space}. Wrap the environment to bound its actions."
        )
    return low, high


def to_bounds(action: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """A policy's action in `[-1, 1]` mapped linearly onto the bounds `[low, high]` of a `Box`
    action space (`require_box`'s)."""
    return low + 0.5 * (action + 1.0) * (high - low)


def from_bounds(action: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """An env action in `[low, high]` mapped back to the policy's `[-1, 1]` (`to_bounds`'
    inverse; stored actions, for critics)."""
    return 2.0 * (action - low) / (high - low) - 1.0


def random_actions(space: gymnasium.spaces.Space, key: PRNGKey, batch_size: int) -> jax.Array:
    """`batch_size` uniformly random actions of a `Discrete` or bounded `Box` space (the
    warm-up actions of off-policy agents)."""
    if isinstance(space, gymnasium.spaces.Discrete):
        start = int(space.start)
        return jax.random.randint(key, (batch_size,), start, start + int(space.n), jnp.int32)
    if isinstance(space, gymnasium.spaces.Box):
        low, high = np.asarray(space.low), np.asarray(space.high)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(f"Random warm-up actions need a bounded action space; got {space}.")
        u = jax.random.uniform(key, (batch_size,) + tuple(space.shape), jnp.float32)
        return (low + u * (high - low)).astype(space.dtype)
    raise ValueError(f"No random warm-up actions for the action space {space}.")


def per_device(num: int, what: str, num_devices: int) -> int:
    """`num` (over all devices) split evenly over `num_devices`, or a clear error."""
    if num % num_devices:
        raise ValueError(
            f"{what} ({num}) must be divisible by the number of devices ({num_devices})."
        )
    return num // num_devices
