"""Host env throughput by where the envs run: `--host-envs sync` (in turn, in this
process), `async` (a subprocess each) and `ray` (in `--env-workers` Ray actors), side by
side in one run.

    python -m purerl.experiments.benchmark_ray                      # both cases below
    python -m purerl.experiments.benchmark_ray --cases sleepy --rounds 5

Two cases, as in issue 26: `sleepy`, CartPole whose every step also sleeps 2 ms (a
simulator that waits, not computes: what workers should hide), 16 envs, Ray with 8 workers;
and `halfcheetah`, Gymnasium's MuJoCo HalfCheetah-v5 (computes), 8 envs, Ray with 2 workers.
Each cell is env steps per second of the vector env alone (random actions, no agent): the
median of `--rounds` timed blocks of `--steps` vector steps, the modes taking turns block by
block so that load on the machine falls on all of them alike. The envs are made and warmed
up (and Ray started) before any timing.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from typing import Any

import gymnasium
import numpy as np

SLEEP_SECONDS = 0.002


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--modes", nargs="+", default=["sync", "async", "ray"])
    parser.add_argument("--rounds", type=int, default=3, help="timed blocks per mode")
    parser.add_argument("--steps", type=int, default=200, help="vector steps per block")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} at the start")
    header = f"{'case':<44} {'envs':>4} " + " ".join(f"{m:>14}" for m in args.modes)
    print(header + "   (env steps/s, median of rounds; ratio to sync)")
    for case in args.cases:
        _, name, num_envs, workers = CASES[case]
        figures = run_case(case, args.modes, args.rounds, args.steps)
        median = {mode: statistics.median(f) for mode, f in figures.items()}
        base = median.get("sync")
        cells = []
        for mode in args.modes:
            ratio = f" {median[mode] / base:4.1f}x" if base else ""
            cells.append(f"{median[mode]:>8,.0f}{ratio}")
        label = f"{name} (ray: {workers} workers)"
        print(f"{label:<44} {num_envs:>4} " + " ".join(f"{c:>14}" for c in cells))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
