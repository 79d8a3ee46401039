"""A custom Gymnasium environment of your own, trained with purerl's DQN and PPO.

`Corridor` is an ordinary Python `gymnasium.Env`: purerl runs it on the host loop, stepping
copies of it through Gymnasium's vector API while the learner runs on the accelerator.

From the command line (run from the repository root, so `examples` imports):

    python -m purerl.experiments.ppo --env examples.custom_gymnasium_env:Corridor \
        --total-timesteps 30000
    python -m purerl.experiments.dqn --env examples.custom_gymnasium_env:Corridor \
        --total-timesteps 30000 --learning-starts 1000 --epsilon-decay-steps 10000

or registered under a Gymnasium id (`gymnasium.register` runs when the module imports):

    python -m purerl.experiments.ppo --env gymnasium:examples.custom_gymnasium_env:Corridor-v0

From Python: `python examples/custom_gymnasium_env.py` (the code at the bottom).
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces


class Corridor(gymnasium.Env):
    """Walk right along a corridor to its exit; each step costs a little.

    Observation: a dict of the position as a one-hot (`Discrete`) and the fraction of the
    time limit left (`Box`); purerl flattens it into one vector. Actions: 0 left, 1 right.
    Reward: +1 on reaching the exit (terminated), -0.01 per step otherwise; the episode is
    truncated after `max_steps`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, length: int = 8, max_steps: int = 40, render_mode: str | None = None):
        self.length, self.max_steps, self.render_mode = length, max_steps, render_mode
        self.observation_space = spaces.Dict(
            {
                "position": spaces.Discrete(length),
                "time_left": spaces.Box(0.0, 1.0, (1,), np.float32),
            }
        )
        self.action_space = spaces.Discrete(2)

    def _obs(self) -> dict:
        left = 1.0 - self.t / self.max_steps
        return {"position": self.position, "time_left": np.array([left], np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.position = int(self.np_random.integers(0, self.length // 2))
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.position = int(np.clip(self.position + (1 if int(action) == 1 else -1), 0, None))
        self.t += 1
        terminated = self.position >= self.length - 1
        self.position = min(self.position, self.length - 1)
        truncated = not terminated and self.t >= self.max_steps
        reward = 1.0 if terminated else -0.01
        return self._obs(), reward, terminated, truncated, {}

    def render(self):
        frame = np.full((16, 16 * self.length, 3), 255, np.uint8)
        frame[:, -16:] = (40, 180, 40)  # The exit.
        frame[4:12, 16 * self.position + 4 : 16 * self.position + 12] = (200, 40, 40)
        return frame


if "Corridor-v0" not in gymnasium.registry:  # Also when run as a script, then imported.
    gymnasium.register("Corridor-v0", entry_point=Corridor)


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `examples` importable.
    from purerl.agents.dqn import DQNConfig
    from purerl.agents.ppo import PPOConfig
    from purerl.experiments import dqn, ppo
    from purerl.experiments.engine.config import RunConfig

    env = "examples.custom_gymnasium_env:Corridor"
    summary = ppo.run(RunConfig(env=env, total_timesteps=30_000), PPOConfig())
    print("PPO final return", summary["final_return_mean"])
    config = DQNConfig(learning_starts=1_000, epsilon_decay_steps=10_000)
    summary = dqn.run(RunConfig(env=env, total_timesteps=30_000), config)
    print("DQN final return", summary["final_return_mean"])

    import purerl

    # The saved policy takes observations as the env returns them (it flattens the Dict).
    policy = purerl.load_policy(summary["run_dir"])
    obs, _ = Corridor().reset(seed=0)
    print(f"greedy action at {obs}:", policy(obs, None))
