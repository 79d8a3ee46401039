"""The Atari preset: `--env gymnasium:ALE/NAME-v5` (ale-py) with the standard preprocessing,
an optional extra: `pip install -e ".[atari]"`.

Each env is Gymnasium's `ALE/NAME-v5` (sticky actions, as v5 has them) under Gymnasium's
`AtariPreprocessing` (up to 30 no-op starts, 4 frames skipped with the last two max-pooled,
84x84 greyscale) and a stack of the last 4 frames, channels last (`[84, 84, 4]` uint8, what
the Nature CNN torso takes). Rewards reach the agent clipped to their sign (the host loop's
`--clip-rewards`, on by default for these ids) while the logged episode returns are the
game's raw scores. The agent learns with episodic life (`EpisodicLife`): a lost life is a
terminal for it while the game goes on; logged returns and evaluation count whole games.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

EXTRA_HINT = 'Atari needs ale-py and OpenCV: pip install -e ".[atari]".'


def is_atari(name: str) -> bool:
    """Whether `name` (an `--env` value) is an ALE id the preset applies to."""
    return name.removeprefix("gymnasium:").startswith("ALE/")


def envpool_has_lives(task_id: str) -> bool:
    """Whether EnvPool's task `task_id` (`Breakout-v5`) has lives: its config takes
    `episodic_life`, as EnvPool's Atari tasks do."""
    import envpool

    return "episodic_life" in envpool.make_spec(task_id).config._fields


def clips_rewards(name: str) -> bool:
    """Whether the agent learns from rewards clipped to their sign by default on the env
    `name` (`--clip-rewards` overrides it): on Atari, ALE's and EnvPool's, as DQN's and
    PPO's Atari papers train."""
    return is_atari(name) or is_envpool_atari(name)


def is_envpool_atari(name: str) -> bool:
    """Whether `name` is an EnvPool Atari id (`envpool:Breakout-v5`)."""
    if not name.startswith("envpool:"):
        return False
    try:
        return envpool_has_lives(name.removeprefix("envpool:"))
    except Exception:  # No EnvPool, or an id it lacks: resolving the env says so clearly.
        return False


def register() -> None:
    """Registers ALE's ids with Gymnasium, or a clear error naming the extra."""
    try:
        import ale_py
        import cv2  # noqa: F401 (AtariPreprocessing's resizing)
    except ImportError as e:
        raise ValueError(f"{e}. {EXTRA_HINT}") from None
    gymnasium.register_envs(ale_py)


class EpisodicLife(gymnasium.Wrapper):
    """A lost life ends the agent's episode (`terminated`) while the game goes on, as in the
    standard Atari setup: `reset` after a lost life takes one no-op step instead of starting
    a new game. `info["game_over"]` says whether the game itself ended (`HostVecEnv` logs
    whole games from it)."""

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def _lives(self) -> int:
        return int(self.env.unwrapped.ale.lives())

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = bool(terminated or truncated)
        lives = self._lives()
        lost_life = 0 < lives < self.lives
        self.lives = lives
        return (
            obs,
            reward,
            bool(terminated or lost_life),
            truncated,
            {**info, "game_over": self.game_over},
        )

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:  # After a lost life: the same game, one no-op later.
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives, self.game_over = self._lives(), False
        return obs, info


def make_atari(
    env_id: str, frame_stack: int = 4, episodic_life: bool = True, **kwargs: Any
) -> gymnasium.Env:
    """One preprocessed Atari env (see the module doc); `kwargs` go to `gymnasium.make`.

    Args:
      episodic_life: a lost life is a terminal for the agent (`EpisodicLife`).
    """
    register()
    env = gymnasium.make(env_id, frameskip=1, **kwargs)
    env = gymnasium.wrappers.AtariPreprocessing(
        env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True, scale_obs=False
    )
    env = gymnasium.wrappers.FrameStackObservation(env, frame_stack)
    shape = env.observation_space.shape[1:] + env.observation_space.shape[:1]
    space = gymnasium.spaces.Box(0, 255, shape, np.uint8)
    env = gymnasium.wrappers.TransformObservation(
        env, lambda obs: np.moveaxis(np.asarray(obs), 0, -1), space
    )
    return EpisodicLife(env) if episodic_life else env
