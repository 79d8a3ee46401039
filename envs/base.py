"""The purerl JAX environment protocol: gymnax 1.0's, with Gymnasium spaces.

An environment is single (unbatched) and auto-resetting:

    reset(key, params) -> (obs, state)
    step(key, state, action, params) -> (obs, state, reward, terminated, truncated, info)

When an episode ends inside `step`, the returned `obs` and `state` already belong to
the next episode and `info["final_observation"]` holds the last observation of the
one that ended, so a truncated episode can be bootstrapped from it. `terminated`
(a true terminal: no bootstrap) and `truncated` (a time limit: bootstrap) stay
separate all the way to the loss. Every gymnax 1.0 environment follows this as it is.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import gymnasium
import jax
from purerl.core import EnvSpec

EnvState = Any
EnvParams = Any
StepResult = tuple[Any, EnvState, jax.Array, jax.Array, jax.Array, dict[str, Any]]


@runtime_checkable
class Environment(Protocol):
    """A JAX environment purerl can run fully jitted on the device loop."""

    @property
    def default_params(self) -> EnvParams: ...

    def reset(self, key: jax.Array, params: EnvParams) -> tuple[Any, EnvState]: ...

    def step(
        self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
    ) -> StepResult: ...

    def observation_space(self, params: EnvParams) -> gymnasium.spaces.Space: ...

    def action_space(self, params: EnvParams) -> gymnasium.spaces.Space: ...


def env_spec(env: Environment, params: EnvParams) -> EnvSpec:
    """The observation and action spaces an agent is built for, and whether observations
    end with the legal-action mask (an env's `action_mask` attribute, see `EnvSpec`)."""
    mask = getattr(env, "action_mask", False) is True
    return EnvSpec(env.observation_space(params), env.action_space(params), mask)
