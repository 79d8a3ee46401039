"""Python (host) environments of the kinds users bring: Gymnasium ones with structured or
unsupported spaces, one that fails mid-run, and a dm_env one."""

import os

import dm_env
import gymnasium
import numpy as np
from dm_env import specs
from gymnasium import spaces


class DictObs(gymnasium.Env):
    """A Dict observation of a Box, a Discrete and a MultiDiscrete part."""

    def __init__(self):
        self.observation_space = spaces.Dict(
            {
                "x": spaces.Box(-1.0, 1.0, (2,), np.float32),
                "k": spaces.Discrete(3),
                "m": spaces.MultiDiscrete([2, 3]),
            }
        )
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return {
            "x": self.np_random.uniform(-1, 1, 2).astype(np.float32),
            "k": int(self.np_random.integers(3)),
            "m": self.np_random.integers([2, 3]),
        }

    def step(self, action):
        self.t += 1
        return self._obs(), float(action), self.t >= 5, False, {}


class TextObs(gymnasium.Env):
    observation_space = spaces.Text(8)
    action_space = spaces.Discrete(2)


class MultiBinaryActions(gymnasium.Env):
    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.MultiBinary(3)


class Exploding(gymnasium.Env):
    """Counts its steps (in this process) and raises at step $PURERL_TEST_EXPLODE_AT."""

    steps = 0
    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        Exploding.steps += 1
        if Exploding.steps == int(os.environ.get("PURERL_TEST_EXPLODE_AT", "-1")):
            raise RuntimeError("the simulator crashed")
        self.t += 1
        obs = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return obs, float(action), False, self.t >= 20, {}


class Catch(dm_env.Environment):
    """A dm_env task: guess the hidden bit; a right guess ends the episode (discount 0),
    and after `limit` steps it ends with discount 1 (a time limit)."""

    def __init__(self, seed=0, limit=4):
        self.rng, self.limit = np.random.default_rng(seed), limit

    def reset(self):
        self.bit, self.t = int(self.rng.integers(2)), 0
        return dm_env.restart(self._obs())

    def _obs(self):
        return {"hint": np.array([self.bit * 0.5 + self.rng.normal() * 0.1], np.float32)}

    def step(self, action):
        self.t += 1
        if int(action) == self.bit:
            return dm_env.termination(1.0, self._obs())
        if self.t >= self.limit:
            return dm_env.truncation(0.0, self._obs())
        return dm_env.transition(0.0, self._obs())

    def observation_spec(self):
        return {"hint": specs.Array((1,), np.float32, "hint")}

    def action_spec(self):
        return specs.DiscreteArray(2, name="action")


INSTANCE = Catch()
