"""Wrappers over the protocol: episode statistics and the vmapped batch of environments."""

from __future__ import annotations

from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from purerl.core import require_positive
from purerl.envs.base import Environment, EnvParams, StepResult
from purerl.running_stats import RunningStats, merge_moments, stats_init, stats_update


class Wrapper:
    """Forwards everything to the wrapped environment."""

    def __init__(self, env: Environment):
        self.env = env

    @property
    def default_params(self) -> EnvParams:
        return self.env.default_params

    def reset(self, key: jax.Array, params: EnvParams) -> tuple[Any, Any]:
        return self.env.reset(key, params)

    def step(self, key: jax.Array, state: Any, action: jax.Array, params: EnvParams) -> StepResult:
        return self.env.step(key, state, action, params)

    def observation_space(self, params: EnvParams) -> gymnasium.spaces.Space:
        return self.env.observation_space(params)

    def action_space(self, params: EnvParams) -> gymnasium.spaces.Space:
        return self.env.action_space(params)

    def __getattr__(self, name: str) -> Any:
        if name == "env":  # Not yet set (e.g. during unpickling).
            raise AttributeError(name)
        return getattr(self.env, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.env!r})"


@struct.dataclass
class EpisodeStatisticsState:
    env_state: Any
    episode_return: jax.Array  # [] float32, return so far of the running episode.
    episode_length: jax.Array  # [] int32, steps so far of the running episode.


class EpisodeStatistics(Wrapper):
    """Adds the return and length of each episode that ends to `info`.

    `info["episode_done"]` marks steps that ended an episode (terminated or truncated);
    on those steps `info["episode_return"]` and `info["episode_length"]` hold the
    finished episode's totals (elsewhere, the running totals).
    """

    def reset(self, key: jax.Array, params: EnvParams) -> tuple[Any, EpisodeStatisticsState]:
        obs, env_state = self.env.reset(key, params)
        return obs, EpisodeStatisticsState(
            env_state, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)
        )

    def step(
        self, key: jax.Array, state: EpisodeStatisticsState, action: jax.Array, params: EnvParams
    ) -> StepResult:
        obs, env_state, reward, terminated, truncated, info = self.env.step(
            key, state.env_state, action, params
        )
        done = jnp.logical_or(terminated, truncated)
        episode_return = state.episode_return + reward.astype(jnp.float32)
        episode_length = state.episode_length + 1
        info = {
            **info,
            "episode_return": episode_return,
            "episode_length": episode_length,
            "episode_done": done,
        }
        state = EpisodeStatisticsState(
            env_state,
            jnp.where(done, 0.0, episode_return),
            jnp.where(done, 0, episode_length),
        )
        return obs, state, reward, terminated, truncated, info


class VecEnv(Wrapper):
    """`num_envs` copies of an environment, vmapped; each auto-resets on its own.

    Every array gains a leading `[num_envs]` axis; one key is split per copy.
    """

    def __init__(self, env: Environment, num_envs: int):
        super().__init__(env)
        self.num_envs = require_positive(num_envs, "num_envs")

    def reset(self, key: jax.Array, params: EnvParams) -> tuple[Any, Any]:
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self.env.reset, in_axes=(0, None))(keys, params)

    def step(self, key: jax.Array, state: Any, action: jax.Array, params: EnvParams) -> StepResult:
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self.env.step, in_axes=(0, 0, 0, None))(keys, state, action, params)


class MaskObservation(Wrapper):
    """Keeps only some entries of a flat `Box` observation (and of `info["final_observation"]`),
    so a memoryless policy cannot see the rest: a partially observed version of the env.

    Attributes:
      keep: the indices of the observation vector that remain.
    """

    def __init__(self, env: Environment, keep: tuple[int, ...]):
        super().__init__(env)
        self.keep = tuple(int(i) for i in keep)

    def _mask(self, obs: jax.Array) -> jax.Array:
        return obs[..., jnp.asarray(self.keep)]

    def reset(self, key: jax.Array, params: EnvParams) -> tuple[Any, Any]:
        obs, state = self.env.reset(key, params)
        return self._mask(obs), state

    def step(self, key: jax.Array, state: Any, action: jax.Array, params: EnvParams) -> StepResult:
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        info = {**info, "final_observation": self._mask(info["final_observation"])}
        return self._mask(obs), state, reward, terminated, truncated, info

    def observation_space(self, params: EnvParams) -> gymnasium.spaces.Space:
        space = self.env.observation_space(params)
        if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"MaskObservation needs a flat Box observation space; got {space}.")
        keep = list(self.keep)
        return gymnasium.spaces.Box(space.low[keep], space.high[keep], (len(keep),), space.dtype)


def cartpole_positions_only() -> tuple[MaskObservation, EnvParams]:
    """gymnax's CartPole-v1 with the velocities hidden (cart position and pole angle only):
    `--env purerl.envs.wrappers:cartpole_positions_only`. A memoryless policy balances it
    poorly; a recurrent one can infer the velocities from successive positions."""
    from purerl.envs.registry import make

    env, params = make("CartPole-v1")
    return MaskObservation(env, (0, 2)), params


@struct.dataclass
class RewardScaleState:
    env_state: Any
    returns: jax.Array  # [num_envs] float32, each env's discounted return so far.
    stats: RunningStats  # Of those returns (over all devices).


class ScaleReward(Wrapper):
    """Rewards divided by the running standard deviation of each env's discounted return
    (`--normalize-rewards`, as Gymnasium's `NormalizeReward`), clipped to +-`clip`, over a
    `VecEnv` (outside `EpisodeStatistics`, so episode returns are logged unscaled). The
    statistics live in the env state, merged over the devices along `axis_name`."""

    def __init__(self, env: VecEnv, gamma: float, axis_name: str | None = None, clip: float = 10.0):
        super().__init__(env)
        self.gamma, self.axis_name, self.clip = gamma, axis_name, clip

    def reset(self, key: jax.Array, params: EnvParams) -> tuple[Any, RewardScaleState]:
        obs, state = self.env.reset(key, params)
        returns = jnp.zeros((self.env.num_envs,), jnp.float32)
        return obs, RewardScaleState(state, returns, stats_init(()))

    def step(
        self, key: jax.Array, state: RewardScaleState, action: jax.Array, params: EnvParams
    ) -> StepResult:
        obs, env_state, reward, terminated, truncated, info = self.env.step(
            key, state.env_state, action, params
        )
        returns = state.returns * self.gamma + reward.astype(jnp.float32)
        stats = stats_update(state.stats, returns, self.axis_name)
        scaled = jnp.clip(reward / jnp.sqrt(stats.var + 1e-8), -self.clip, self.clip)
        returns = jnp.where(jnp.logical_or(terminated, truncated), 0.0, returns)
        new = RewardScaleState(env_state, returns, stats)
        return obs, new, scaled, terminated, truncated, info


class HostRewardScale:
    """`ScaleReward` for the host loop's NumPy rewards; its state is saved with the run's
    host state for checkpoints."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0):
        self.gamma, self.clip = gamma, clip
        self.returns = np.zeros((num_envs,), np.float64)
        self.count, self.mean, self.var = 0.0, 0.0, 1.0

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        self.returns = self.returns * self.gamma + reward
        n = float(self.returns.shape[0])
        self.count, self.mean, self.var = merge_moments(
            self.count, self.mean, self.var, n, self.returns.mean(), self.returns.var()
        )
        scaled = np.clip(reward / np.sqrt(self.var + 1e-8), -self.clip, self.clip)
        self.returns = np.where(done, 0.0, self.returns)
        return scaled.astype(np.float32)

    def state(self) -> dict[str, Any]:
        return {"returns": self.returns.tolist(), "moments": [self.count, self.mean, self.var]}

    def load(self, state: dict[str, Any]) -> None:
        self.returns = np.asarray(state["returns"], np.float64)
        self.count, self.mean, self.var = (float(v) for v in state["moments"])


class ClipReward(Wrapper):
    """Rewards clipped to their sign (`--clip-rewards`), over a `VecEnv` (outside
    `EpisodeStatistics`, so episode returns are logged unclipped)."""

    def step(self, key: jax.Array, state: Any, action: jax.Array, params: EnvParams) -> StepResult:
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        return obs, state, jnp.sign(reward).astype(jnp.float32), terminated, truncated, info
