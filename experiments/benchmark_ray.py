"""Host env throughput by where the envs run: `--host-envs sync` (in turn, in this
process), `async` (a subprocess each) and `ray` (in `--env-workers` Ray actors), side by
side in one run.

    python -m purerl.experiments.benchmark_ray                      # every case below
    python -m purerl.experiments.benchmark_ray --cases sleepy --rounds 5

Three cases, as in issue 26. Two time the vector env alone (random actions, no agent):
`sleepy`, CartPole whose every step also sleeps 2 ms (a simulator that waits, not
computes: what workers should hide), 16 envs, Ray with 8 workers; and `halfcheetah`,
Gymnasium's MuJoCo HalfCheetah-v5 (computes), 8 envs, Ray with 2 workers. Each cell is env
steps per second: the median of `--rounds` timed blocks of `--steps` vector steps, the
modes taking turns block by block so that load on the machine falls on all of them alike.
The envs are made and warmed up (and Ray started) before any timing.

The third, `train-sleepy`, trains PPO on the sleepy CartPole (16 envs, `--train-steps` env
steps) in each mode, also `ray-actors` (8 Ray workers with `--actors-on-workers`: each acts
on its slice, so a rollout costs one round trip, not one a step). Each cell is the median
over `--rounds` of the training env steps/s a run reports (its `summary.json`: training
time, compilation and startup left out), every run a fresh process, the modes taking turns.
Below each case, what Ray adds to a vector step over async (a subprocess per env, the
local baseline): `envs / (its steps/s) - envs / (async's)`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import gymnasium
import numpy as np

SLEEP_SECONDS = 0.002
# The sleepy CartPole by name, as `--env` takes it: Ray workers and subprocesses make it too.
SLEEPY = "purerl.experiments.benchmark_ray:sleepy_cartpole"


class SleepyStep(gymnasium.Wrapper):
    """Sleeps `seconds` in every step, as a simulator that waits on something would."""

    def __init__(self, env: gymnasium.Env, seconds: float):
        super().__init__(env)
        self.seconds = seconds

    def step(self, action: Any) -> Any:
        time.sleep(self.seconds)
        return self.env.step(action)


def sleepy_cartpole() -> gymnasium.Env:
    return SleepyStep(gymnasium.make("CartPole-v1"), SLEEP_SECONDS)


# name: (env factory, its name, envs, Ray workers)
CASES = {
    "sleepy": (sleepy_cartpole, "CartPole-v1 + 2 ms sleep", 16, 8),
    "halfcheetah": (
        functools.partial(gymnasium.make, "HalfCheetah-v5"),
        "gymnasium:HalfCheetah-v5",
        8,
        2,
    ),
}
# name: (agent, env, its name, envs, Ray workers)
TRAIN_CASES = {"train-sleepy": ("ppo", SLEEPY, "PPO, CartPole + 2 ms sleep", 16, 8)}
MODES = ["sync", "async", "ray", "ray-actors"]  # ray-actors: training cases only.


def make(case: str, mode: str) -> Any:
    from purerl import envs

    env_fn, name, num_envs, workers = CASES[case]
    return envs.host_vec_env(env_fn, num_envs, name, mode, workers=workers)


def steps_per_second(vec: Any, steps: int, rng: np.random.Generator) -> float:
    space = vec.spec.action_space
    if hasattr(space, "n"):
        actions = rng.integers(0, space.n, (steps, vec.num_envs))
    else:
        actions = rng.uniform(space.low, space.high, (steps, vec.num_envs) + space.shape)
    start = time.perf_counter()
    for action in actions:
        vec.step(action.astype(space.dtype))
    return steps * vec.num_envs / (time.perf_counter() - start)


def run_case(case: str, modes: list[str], rounds: int, steps: int) -> dict[str, list[float]]:
    vecs = {mode: make(case, mode) for mode in modes}
    rng = np.random.default_rng(0)
    try:
        for vec in vecs.values():
            vec.reset(seed=0)
            steps_per_second(vec, max(1, steps // 10), rng)  # Warm-up.
        figures: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(rounds):
            for mode, vec in vecs.items():
                figures[mode].append(steps_per_second(vec, steps, rng))
        return figures
    finally:
        for vec in vecs.values():
            vec.close()


def train_command(case: str, mode: str, steps: int, run_dir: str) -> list[str]:
    """The training run of `case` in `mode`, as a command line of this Python."""
    agent, env, _, num_envs, workers = TRAIN_CASES[case]
    command = [sys.executable, "-m", f"purerl.experiments.{agent}", "--env", env]
    command += ["--num-envs", str(num_envs), "--num-devices", "1", "--num-logs", "1"]
    command += ["--total-timesteps", str(steps), "--quiet", "--run-dir", run_dir]
    command += ["--host-envs", mode.removesuffix("-actors")]
    if mode.startswith("ray"):
        command += ["--env-workers", str(workers)]
    if mode == "ray-actors":
        command += ["--actors-on-workers"]
    return command


def train_steps_per_second(case: str, mode: str, steps: int) -> float:
    """The training env steps/s of one fresh run (its summary's: compilation left out)."""
    with tempfile.TemporaryDirectory() as tmp:
        command = train_command(case, mode, steps, os.path.join(tmp, "run"))
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(
                f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stderr[-2000:]}"
            )
        with open(os.path.join(tmp, "run", "summary.json")) as f:
            return float(json.load(f)["steps_per_second"])


def run_training(case: str, modes: list[str], rounds: int, steps: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(rounds):
        for mode in modes:
            figures[mode].append(train_steps_per_second(case, mode, steps))
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    every = list(CASES) + list(TRAIN_CASES)
    parser.add_argument("--cases", nargs="+", choices=every, default=every)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=MODES)
    parser.add_argument("--rounds", type=int, default=3, help="timed blocks (runs) per mode")
    parser.add_argument("--steps", type=int, default=200, help="vector steps per block")
    parser.add_argument(
        "--train-steps", type=int, default=16384, help="env steps of each training run"
    )
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} at the start")
    header = f"{'case':<44} {'envs':>4} " + " ".join(f"{m:>14}" for m in args.modes)
    print(header + "   (env steps/s, median of rounds; ratio to sync)")
    for case in args.cases:
        if case in TRAIN_CASES:
            _, _, name, num_envs, workers = TRAIN_CASES[case]
            figures = run_training(case, args.modes, args.rounds, args.train_steps)
        else:
            _, name, num_envs, workers = CASES[case]
            modes = [m for m in args.modes if m != "ray-actors"]  # No agent acts there.
            figures = run_case(case, modes, args.rounds, args.steps)
        median = {mode: statistics.median(f) for mode, f in figures.items()}
        base = median.get("sync")
        cells = []
        for mode in args.modes:
            if mode not in median:
                cells.append("-")
                continue
            ratio = f" {median[mode] / base:4.1f}x" if base else ""
            cells.append(f"{median[mode]:>8,.0f}{ratio}")
        label = f"{name} (ray: {workers} workers)"
        print(f"{label:<44} {num_envs:>4} " + " ".join(f"{c:>14}" for c in cells))
        if "async" in median:  # What Ray adds to each vector step over a subprocess per env.
            over = [
                f"{mode} {1e3 * num_envs * (1 / median[mode] - 1 / median['async']):+.1f} ms"
                for mode in ("ray", "ray-actors")
                if mode in median
            ]
            if over:
                print(f"{'':<4}per vector step against async: {', '.join(over)}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
