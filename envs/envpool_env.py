"""EnvPool on the host loop (`--env envpool:ID`: `CartPole-v1`, `HalfCheetah-v5`,
`Breakout-v5`, ...), an optional extra: `pip install -e ".[envpool]"`.

`EnvPoolVecEnv` steps the whole batch in EnvPool's C++ thread pool, one call per vector
step. EnvPool resets an env on the step *after* its episode ended; the host loop wants it
reset on the same step (the next observation of an ended episode is the new episode's
first). So where episodes ended, the same step sends those envs alone one more step, which
EnvPool spends on resetting them, and takes their first observations from it.
`EnvPoolEnv` is one EnvPool env as a `gymnasium.Env`, for what needs a single env (the
spaces, `load_policy`).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from purerl.core import EnvSpec
from purerl.envs.atari import envpool_has_lives
from purerl.envs.host import HostVecEnv, agent_observation_space, check_spaces

EXTRA_HINT = 'EnvPool is an optional extra: pip install -e ".[envpool]" (or pip install envpool).'


def _envpool() -> Any:
    try:
        import envpool
    except ImportError as e:
        raise ValueError(
            f"--env envpool:ID needs EnvPool, which is not installed ({e}). {EXTRA_HINT}"
        ) from None
    return envpool


def check_task(task_id: str, **kwargs: Any) -> None:
    """A clear error for an id EnvPool does not have."""
    known = _envpool().list_all_envs()
    if task_id not in known:
        import difflib

        close = difflib.get_close_matches(task_id, known, n=3)
        hint = f" Did you mean {', '.join('envpool:' + c for c in close)}?" if close else ""
        raise ValueError(f"Unknown EnvPool environment {task_id!r}.{hint}")


def is_frames(space: gymnasium.spaces.Space) -> bool:
    """Whether `space` is EnvPool's stacked Atari frames, `[stack, H, W]` uint8."""
    box = isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 3
    return box and space.dtype == np.uint8


def channels_last(space: gymnasium.spaces.Box) -> gymnasium.spaces.Box:
    """`[stack, H, W]` frames as `[H, W, stack]`, the layout purerl's CNN torsos take (and
    its Gymnasium Atari preset makes)."""
    order = (1, 2, 0)
    low, high = np.transpose(space.low, order), np.transpose(space.high, order)
    return gymnasium.spaces.Box(low, high, low.shape, space.dtype)


class EnvPoolEnv(gymnasium.Env):
    """One EnvPool environment as a `gymnasium.Env` (Atari frames channels last)."""

    def __init__(self, task_id: str, **kwargs: Any):
        self.pool = _envpool().make_gymnasium(task_id, num_envs=1, **kwargs)
        self.frames = is_frames(self.pool.observation_space)
        space = self.pool.observation_space
        self.observation_space = channels_last(space) if self.frames else space
        self.action_space = self.pool.action_space
        self.task_id, self.kwargs = task_id, kwargs

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(obs[0], 0, -1)) if self.frames else obs[0]

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[Any, dict]:
        if seed is not None:
            self.pool.close()
            self.pool = _envpool().make_gymnasium(
                self.task_id, num_envs=1, seed=seed, **self.kwargs
            )
        obs, _ = self.pool.reset()
        return self._obs(obs), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, _ = self.pool.step(np.asarray([action]))
        return self._obs(obs), float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}

    def close(self) -> None:
        self.pool.close()


class EnvPoolFactory:
    """`envpool:ID` resolved: calling it makes one `EnvPoolEnv`; the host loop makes an
    `EnvPoolVecEnv` of it instead of a Gymnasium vector env."""

    def __init__(self, task_id: str, **kwargs: Any):
        check_task(task_id)
        self.task_id, self.kwargs = task_id, kwargs

    def __call__(self) -> EnvPoolEnv:
        return EnvPoolEnv(self.task_id, **self.kwargs)


class EnvPoolVecEnv(HostVecEnv):
    """`num_envs` EnvPool environments stepped as one batch, with same-step auto-reset."""

    def __init__(self, factory: EnvPoolFactory, num_envs: int, name: str, mode: str = "sync"):
        if num_envs < 1:
            raise ValueError(f"num_envs must be positive; got {num_envs}.")
        self.factory, self.name, self.num_envs, self.mode = factory, name, num_envs, "envpool"
        probe = factory()
        raw_obs, action_space = probe.observation_space, probe.action_space
        probe.close()
        check_spaces(raw_obs, action_space, name)
        if not isinstance(raw_obs, gymnasium.spaces.Box):
            raise ValueError(f"{name}: EnvPool envs with {raw_obs} observations are not supported.")
        self.frames = probe.frames  # Atari frames, moved channels last (as `raw_obs` is).
        self.raw_observation_space = raw_obs
        self.spec = EnvSpec(agent_observation_space(raw_obs), action_space)
        # Atari learns with episodic life, as is standard (a lost life is a terminal for
        # the agent); the logged returns stay whole games. Evaluation plays whole games.
        self.pool_kwargs = dict(factory.kwargs)
        if envpool_has_lives(factory.task_id):
            self.pool_kwargs.setdefault("episodic_life", True)
        self.episodic_life = bool(self.pool_kwargs.get("episodic_life", False))
        self.pool: Any = None
        self.ids = np.arange(num_envs, dtype=np.int32)
        self.steps = 0
        self.episode_return = np.zeros(num_envs, np.float64)
        self.episode_length = np.zeros(num_envs, np.int64)
        self._zeros_f, self._zeros_i = np.zeros(num_envs), np.zeros(num_envs, np.int64)
        self.obs: np.ndarray | None = None

    def _reset_envs(self, seed: int) -> Any:
        if self.pool is not None:
            self.pool.close()
        self.pool = _envpool().make_gymnasium(
            self.factory.task_id, num_envs=self.num_envs, seed=seed, **self.pool_kwargs
        )
        obs, _ = self.pool.reset()
        return self._layout(obs)

    def _layout(self, obs: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(obs, 1, -1)) if self.frames else obs

    def _step_envs(self, action: np.ndarray) -> tuple[Any, ...]:
        obs, reward, terminated, truncated, info = self.pool.step(np.asarray(action), self.ids)
        order = np.argsort(info["env_id"])  # By env id (EnvPool may return them in any order).
        obs, reward, terminated, truncated = (
            x[order] for x in (obs, reward, terminated, truncated)
        )
        obs = self._layout(obs)
        done = np.flatnonzero(np.logical_or(terminated, truncated))
        finals = {}
        if done.size:
            finals = {int(i): obs[i].copy() for i in done}
            # EnvPool spends an ended env's next step on its reset (the action is ignored);
            # after a lost life (episodic life), on carrying on with the same game.
            first, *_, again = self.pool.step(np.asarray(action)[done], self.ids[done])
            obs = obs.copy()
            obs[again["env_id"]] = self._layout(first)
        if self.episodic_life:  # Where whole games ended (the logged episodes).
            return obs, reward, terminated, truncated, finals, info["terminated"][order] > 0
        return obs, reward, terminated, truncated, finals

    def get_state(self) -> bytes | None:
        return None  # EnvPool's C++ envs do not pickle: a resumed run starts new episodes.

    def set_state(self, state: bytes) -> None:
        raise ValueError("EnvPool envs cannot be restored from a saved state.")

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
