"""The `Agent` type every purerl algorithm returns, in the style of optax's
`GradientTransformation`."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import gymnasium
import jax

PRNGKey = jax.Array
AgentState = Any  # A pytree: params, target params, optax state, counters.
Observation = Any  # An array (or pytree of arrays) with a leading batch axis.
Action = jax.Array
ActInfo = dict[str, jax.Array]
Batch = Any
Metrics = dict[str, jax.Array]


class EnvSpec(NamedTuple):
    """What an agent needs to know about an environment to build its networks."""

    observation_space: gymnasium.spaces.Space
    action_space: gymnasium.spaces.Space


class InitFn(Protocol):
    def __call__(self, key: PRNGKey, spec: EnvSpec) -> AgentState: ...


class ActFn(Protocol):
    def __call__(
        self, state: AgentState, obs: Observation, key: PRNGKey, deterministic: bool = False
    ) -> tuple[Action, ActInfo]: ...


class LearnFn(Protocol):
    def __call__(
        self, state: AgentState, batch: Batch, key: PRNGKey
    ) -> tuple[AgentState, Metrics]: ...


class Agent(NamedTuple):
    """An agent as three pure functions.

    Attributes:
      init: `(key, spec) -> state`, the initial agent state (a pytree).
      act: `(state, obs[B, ...], key, deterministic=False) -> (action[B], info)`;
        jittable and vmappable. `deterministic=True` is the greedy / mean policy
        used for evaluation.
      learn: `(state, batch, key) -> (state, metrics)`; one learner update. When the
        agent was made with an `axis_name`, gradients (and batch statistics) are
        averaged over that named device axis, so the same function is the
        single-device and the data-parallel learner.
    """

    init: InitFn
    act: ActFn
    learn: LearnFn


def require_discrete(space: gymnasium.spaces.Space, agent: str) -> int:
    """Returns the number of actions of a `Discrete` space, or a clear error."""
    if not isinstance(space, gymnasium.spaces.Discrete):
        raise ValueError(
            f"{agent} needs a discrete action space (gymnasium.spaces.Discrete), but the "
            f"environment's action space is {space}. Use an agent for continuous actions "
            "or an environment with discrete actions."
        )
    if int(space.start) != 0:
        raise ValueError(f"{agent} needs actions numbered from 0; got {space}.")
    return int(space.n)


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
    """

    obs: Observation
    action: Action
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_obs: Observation
    extras: ActInfo


def maybe_pmean(tree: Any, axis_name: str | None) -> Any:
    """Averages `tree` over the named device axis, or returns it unchanged without one."""
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)
