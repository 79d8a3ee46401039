"""Adapter for gymnax environments: the protocol is already theirs; only spaces change."""

from __future__ import annotations

from typing import Any

import gymnasium
import jax

from purerl.envs.base import EnvParams, EnvState, StepResult
from purerl.envs.spaces import from_gymnax


class GymnaxEnv:
    """A gymnax 1.0 environment behind purerl's protocol, with Gymnasium spaces."""

    def __init__(self, env: Any, name: str | None = None):
        self.env = env
        self.name = name or type(env).__name__

    @property
    def default_params(self) -> EnvParams:
        return self.env.default_params

    def reset(self, key: jax.Array, params: EnvParams) -> tuple[Any, EnvState]:
        return self.env.reset(key, params)

    def step(self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams) -> StepResult:
        return self.env.step(key, state, action, params)

    def observation_space(self, params: EnvParams) -> gymnasium.spaces.Space:
        return from_gymnax(self.env.observation_space(params))

    def action_space(self, params: EnvParams) -> gymnasium.spaces.Space:
        return from_gymnax(self.env.action_space(params))

    def __repr__(self) -> str:
        return f"GymnaxEnv({self.name})"
