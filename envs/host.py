"""Host environments: any Gymnasium `Env` or `dm_env.Environment`, stepped in Python on the
host by the host loop (`purerl.experiments.engine.sebulba`).

`HostVecEnv` runs a batch of them through Gymnasium's vector API with same-step auto-reset
(in this process, or one subprocess per env), flattens structured observations into one
float vector, and keeps the episode statistics the loops log. Its `step` returns what the
JAX protocol's does: the next observations (of the next episode where one ended), rewards,
`terminated` and `truncated` kept apart, and the ended episodes' final observations.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from purerl.core import EnvSpec
from purerl.envs.checks import EnvCheckError, FirstStepsCheck

_UNSUPPORTED_OBS = tuple(
    getattr(spaces, name)
    for name in ("Text", "Graph", "Sequence", "OneOf")
    if hasattr(spaces, name)
)


class HostEnvError(RuntimeError):
    """A host environment raised while the loop stepped or reset it."""


class EnvsRestarted(RuntimeError):
    """Envs were lost and made afresh (a Ray env worker died): the step did not happen and
    every env was reset, so the host loop drops the rollout in flight."""


# --------------------------------------------------------------------------------------
# dm_env -> Gymnasium


def spec_to_space(spec: Any) -> spaces.Space:
    """A Gymnasium space for a dm_env spec (or a dict / tuple / list of them)."""
    from dm_env import specs

    if isinstance(spec, specs.DiscreteArray):
        if spec.shape == ():
            return spaces.Discrete(int(spec.num_values))
        return spaces.MultiDiscrete(np.full(spec.shape, spec.num_values), dtype=spec.dtype)
    if isinstance(spec, specs.StringArray):
        raise ValueError(f"dm_env string specs have no Gymnasium space purerl can learn on: {spec}")
    if isinstance(spec, specs.BoundedArray):
        low = np.broadcast_to(spec.minimum, spec.shape).astype(spec.dtype)
        high = np.broadcast_to(spec.maximum, spec.shape).astype(spec.dtype)
        return spaces.Box(low, high, spec.shape, spec.dtype)
    if isinstance(spec, specs.Array):
        dtype = np.dtype(spec.dtype)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            return spaces.Box(info.min, info.max, spec.shape, dtype)
        return spaces.Box(-np.inf, np.inf, spec.shape, dtype)
    if isinstance(spec, dict):
        return spaces.Dict({k: spec_to_space(v) for k, v in spec.items()})
    if isinstance(spec, (tuple, list)):
        return spaces.Tuple(tuple(spec_to_space(v) for v in spec))
    raise ValueError(f"Cannot turn the dm_env spec {spec!r} into a Gymnasium space.")


class DmEnvAdapter(gymnasium.Env):
    """Any `dm_env.Environment` as a `gymnasium.Env`.

    A `LAST` time step with discount 0 ends the episode as `terminated`; any other `LAST`
    step (a time limit, discount > 0) as `truncated`, so the loss bootstraps from it.
    dm_env has no seeding API: seed the wrapped environment when you build it.
    """

    metadata = {"render_modes": []}

    def __init__(self, env: Any):
        self.env = env
        self.observation_space = spec_to_space(env.observation_spec())
        self.action_space = spec_to_space(env.action_spec())

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.env.reset().observation, {}

    def step(self, action: Any):
        if isinstance(self.action_space, spaces.Discrete):
            action = int(action)
        timestep = self.env.step(action)
        reward = 0.0 if timestep.reward is None else float(np.sum(timestep.reward))
        terminated = truncated = False
        if timestep.last():
            discount = 0.0 if timestep.discount is None else float(np.max(timestep.discount))
            terminated = discount == 0.0
            truncated = not terminated
        return timestep.observation, reward, terminated, truncated, {}

    def close(self) -> None:
        self.env.close()


# --------------------------------------------------------------------------------------
# Spaces


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space, name: str) -> None:
    """Raises a clear error for spaces the host loop cannot feed to an agent."""
    for space in _leaf_spaces(observation_space):
        if isinstance(space, _UNSUPPORTED_OBS):
            raise ValueError(
                f"{name}: its observation space {observation_space} holds a {type(space).__name__} "
                "space, which purerl cannot turn into an array. Wrap the environment with a "
                "gymnasium.ObservationWrapper that encodes it as a Box."
            )
    if not isinstance(action_space, (spaces.Discrete, spaces.Box)):
        raise ValueError(
            f"{name}: its action space {action_space} is not supported; purerl agents take "
            "Discrete or Box actions. Wrap the environment with a gymnasium.ActionWrapper."
        )


def _leaf_spaces(space: spaces.Space) -> list[spaces.Space]:
    if isinstance(space, spaces.Dict):
        return [s for sub in space.spaces.values() for s in _leaf_spaces(sub)]
    if isinstance(space, spaces.Tuple):
        return [s for sub in space.spaces for s in _leaf_spaces(sub)]
    return [space]


def agent_observation_space(space: spaces.Space) -> spaces.Box:
    """What an agent sees of `space`: a Box as it is (float32 unless it is uint8 pixels),
    anything else (Dict, Tuple, Discrete, MultiDiscrete, MultiBinary) flattened into one
    float32 vector, one-hot for discrete parts, as `gymnasium.spaces.flatten` does."""
    if isinstance(space, spaces.Box):
        dtype = np.uint8 if space.dtype == np.uint8 else np.float32
        return spaces.Box(space.low.astype(dtype), space.high.astype(dtype), space.shape, dtype)
    flat = spaces.flatten_space(space)
    return spaces.Box(flat.low.astype(np.float32), flat.high.astype(np.float32), flat.shape)


# --------------------------------------------------------------------------------------
# The vectorised host environment


class HostVecEnv:
    """A batch of host environments behind Gymnasium's vector API with same-step auto-reset.

    Args:
      env_fn: makes one environment (a `gymnasium.Env`, or a `dm_env.Environment`).
      num_envs: how many to run.
      name: the environment's name, for messages.
      mode: "sync" (one process, in turn) or "async" (one subprocess each).
    """

    def _read_spaces(self, env_fn: Callable[[], Any]) -> spaces.Space:
        """Sets `spec` (what the agent sees) and `raw_observation_space` from one env made
        and closed, its spaces checked; returns the raw observation space."""
        probe = as_gymnasium(env_fn(), self.name)
        raw_obs, action_space = probe.observation_space, probe.action_space
        probe.close()
        check_spaces(raw_obs, action_space, self.name)
        self.raw_observation_space = raw_obs
        self.spec = EnvSpec(agent_observation_space(raw_obs), action_space)
        return raw_obs

    def __init__(self, env_fn: Callable[[], Any], num_envs: int, name: str, mode: str = "sync"):
        if num_envs < 1:
            raise ValueError(f"num_envs must be positive; got {num_envs}.")
        if mode not in ("sync", "async"):
            raise ValueError(f"The host env mode must be 'sync' or 'async'; got {mode!r}.")
        self.name, self.num_envs, self.mode = name, num_envs, mode
        raw_obs = self._read_spaces(env_fn)
        # Each env flattens its own observations (final ones included) before batching.
        make = _EnvFactory(env_fn, name, flatten=not isinstance(raw_obs, spaces.Box))
        same_step = gymnasium.vector.AutoresetMode.SAME_STEP
        if mode == "async":
            # Not forked from this (multithreaded, JAX-running) process: a fork could
            # deadlock. The env factory is pickled to the workers instead.
            self.vec = gymnasium.vector.AsyncVectorEnv(
                [make] * num_envs, autoreset_mode=same_step, context="forkserver"
            )
        else:
            self.vec = gymnasium.vector.SyncVectorEnv([make] * num_envs, autoreset_mode=same_step)
        self.steps = 0  # Vector steps taken, for messages.
        self.episode_return = np.zeros(num_envs, np.float64)
        self.episode_length = np.zeros(num_envs, np.int64)
        self._zeros_f, self._zeros_i = np.zeros(num_envs), np.zeros(num_envs, np.int64)
        self.obs: np.ndarray | None = None

    # Observations ------------------------------------------------------------------
    def _agent_obs(self, obs: Any) -> np.ndarray:
        return np.asarray(obs, dtype=self.spec.observation_space.dtype)

    # Stepping ----------------------------------------------------------------------
    def _reset_envs(self, seed: int) -> Any:
        obs, _ = self.vec.reset(seed=[seed + i for i in range(self.num_envs)])
        return obs

    def _step_envs(self, action: np.ndarray) -> tuple[Any, ...]:
        """One vector step with same-step auto-reset: `(obs, reward, terminated, truncated,
        finals)`, `finals` the ended episodes' last observations by env index; a subclass
        whose envs end the agent's episode at a lost life adds a sixth, where games ended."""
        raw, reward, terminated, truncated, info = self.vec.step(action)
        finals = {}
        if "_final_obs" in info:
            finals = {int(i): info["final_obs"][i] for i in np.flatnonzero(info["_final_obs"])}
        ended = info.get("final_info", {})
        if "game_over" not in ended:
            return raw, reward, terminated, truncated, finals
        # Envs that end the agent's episode at a lost life (`atari.EpisodicLife`) say where
        # the game itself ended.
        lost_life = np.asarray(ended["_game_over"], bool) & ~np.asarray(ended["game_over"], bool)
        return raw, reward, terminated, truncated, finals, (terminated | truncated) & ~lost_life

    def reset(self, seed: int) -> np.ndarray:
        """Resets every env, env i with seed `seed + i`; returns the observations."""
        try:
            obs = self._reset_envs(seed)
        except EnvCheckError:
            raise
        except Exception as e:
            raise HostEnvError(f"Environment {self.name} raised in reset: {e!r}") from e
        self.obs = self._agent_obs(obs)
        self.episode_return[:] = 0.0
        self.episode_length[:] = 0
        return self.obs

    def step(self, action: np.ndarray) -> tuple[np.ndarray, ...]:
        """Steps every env once.

        Returns:
          `(obs, reward, terminated, truncated, final_obs, ended_return, ended_length, done)`:
          `final_obs` is the observation each step led to (the ended episode's last one
          where it ended); `ended_*` hold the finished episodes' return and length (0
          elsewhere); `done` marks those (with episodic life, whole games: a lost life is
          `terminated` for learning but the logged return is the game's).
        """
        try:
            raw, reward, terminated, truncated, finals, *over = self._step_envs(action)
        except (EnvCheckError, EnvsRestarted):
            raise
        except Exception as e:
            raise HostEnvError(
                f"Environment {self.name} raised in step {self.steps} of the host loop "
                f"(vector step; {self.num_envs} envs): {e!r}"
            ) from e
        self.steps += 1
        obs = self._agent_obs(raw)
        reward = np.asarray(reward, np.float32)
        terminated = np.asarray(terminated, bool)
        truncated = np.asarray(truncated, bool)
        done = terminated | truncated  # Where the agent's episodes end (what it learns).
        # Where the env's own episodes end (what is logged): the same, except with episodic
        # life (Atari), where a lost life ends the agent's episode and a lost game the env's.
        over = done if not over else np.asarray(over[0], bool) | truncated
        self.episode_return += reward
        self.episode_length += 1
        final_obs, ended_return, ended_length = obs, self._zeros_f, self._zeros_i
        if done.any():
            final_obs = obs.copy()
            for i, final in finals.items():
                final_obs[i] = np.asarray(final, obs.dtype)
        if over.any():
            ended_return = np.where(over, self.episode_return, 0.0)
            ended_length = np.where(over, self.episode_length, 0)
            self.episode_return[over] = 0.0
            self.episode_length[over] = 0
        self.obs = obs
        return obs, reward, terminated, truncated, final_obs, ended_return, ended_length, over

    # Checkpoints -------------------------------------------------------------------
    def get_state(self) -> bytes | None:
        """The environments' whole state (pickled), or None where it cannot be saved
        (subprocess envs, or envs that do not pickle)."""
        if self.mode != "sync":
            return None
        try:
            return pickle.dumps(
                (self.vec.envs, self.obs, self.episode_return, self.episode_length, self.steps)
            )
        except Exception:
            return None

    def set_state(self, state: bytes) -> None:
        envs, self.obs, self.episode_return, self.episode_length, self.steps = pickle.loads(state)
        self.vec.envs = envs

    def close(self) -> None:
        self.vec.close()


class _EnvFactory:
    """Makes one env as a `gymnasium.Env`, its first observations checked against its space
    (`checks.FirstStepsCheck`) and flattened by Gymnasium's `FlattenObservation` when asked
    (picklable when `env_fn` is, for subprocesses)."""

    def __init__(self, env_fn: Callable[[], Any], name: str, flatten: bool):
        self.env_fn, self.name, self.flatten = env_fn, name, flatten

    def __call__(self) -> gymnasium.Env:
        env = FirstStepsCheck(as_gymnasium(self.env_fn(), self.name), self.name)
        return gymnasium.wrappers.FlattenObservation(env) if self.flatten else env


def as_gymnasium(env: Any, name: str) -> gymnasium.Env:
    """`env` itself when it is a `gymnasium.Env`; a `DmEnvAdapter` around a dm_env one."""
    if isinstance(env, gymnasium.Env):
        return env
    try:
        import dm_env

        if isinstance(env, dm_env.Environment):
            return DmEnvAdapter(env)
    except ImportError:
        pass
    raise TypeError(
        f"{name} gave {type(env).__name__}, which is neither a gymnasium.Env nor a "
        "dm_env.Environment."
    )
