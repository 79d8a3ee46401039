"""Benchmarks: train an agent and print the summary's figures. Speed is measured here, not in tests.

    python -m purerl.experiments.benchmark --agent ppo --seeds 0 1 2 3 4 --num-seeds 8
    python -m purerl.experiments.benchmark --agent ppo --process-runs 3 \\
        --baseline-cmd "python other_framework_ppo.py"

Each seed in `--seeds` trains alone (one seed per program); `--num-seeds N` also trains N
seeds vmapped in one program. `--process-runs K` times K whole processes of
`python -m purerl.experiments AGENT` (import, compile and train), alternating with
`--baseline-cmd` if given, and prints the ratio of their median wall times.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Annotated, Any

import tyro
from purerl.experiments.cli import cli_main
from purerl.experiments.engine.config import RunConfig
from purerl.experiments.engine.logger import format_return

PROG = "python -m purerl.experiments.benchmark"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Benchmark:
    """Trains an agent and prints the summary's figures: final returns, steps per second,
    compile and train times. Each of --seeds trains alone; --num-seeds N also trains N seeds
    vmapped in one program; --process-runs K times K whole processes (import, compile and
    train), alternating with --baseline-cmd if given, and prints the ratio of their median
    wall times.

    Attributes:
      agent: which registered agent's experiment to run (ppo, dqn, sac, ...).
      env: environment name.
      total_timesteps: environment steps per seed.
      seeds: seeds to train one at a time.
      num_seeds: also train this many seeds vmapped in one program (0: skip).
      num_devices: devices to run on.
      process_runs: time this many whole `python -m purerl.experiments AGENT` processes.
      baseline_cmd: a command to time alternately with those processes, for a ratio.
      extra: extra flags for the agent's experiment, given as --extra="--num-envs 16".
    """

    agent: str = "ppo"
    env: str = "CartPole-v1"
    total_timesteps: int = 500_000
    seeds: tuple[int, ...] = (0,)
    num_seeds: int = 0
    num_devices: Annotated[
        int | None, tyro.conf.arg(metavar="INT", help_behavior_hint="(default: all local devices)")
    ] = None
    process_runs: int = 0
    baseline_cmd: str = ""
    extra: str = ""


def _train(bench: Benchmark, seed: int, num_seeds: int, run_dir: str) -> dict[str, Any]:
    from purerl.experiments.cli import agent_script

    _, main = agent_script(bench.agent)
    argv = [
        "--env",
        bench.env,
        "--total-timesteps",
        str(bench.total_timesteps),
        "--seed",
        str(seed),
        "--num-seeds",
        str(num_seeds),
        "--run-dir",
        run_dir,
        "--quiet",
        *shlex.split(bench.extra),
    ]
    if bench.num_devices is not None:
        argv += ["--num-devices", str(bench.num_devices)]
    return main(argv)


def _return(value: float | None) -> str:
    """A final return, or "—" where no episode ended (NaN, or null in `summary.json`)."""
    return format_return(float("nan") if value is None else value)


def _line(label: str, s: dict[str, Any]) -> str:
    returns = ", ".join(_return(r) for r in s["final_return"])
    return (
        f"{label:<18} final_return [{returns}]  {s['steps_per_second']:>10,.0f} steps/s  "
        f"compile {s['compile_seconds']:5.2f}s  train {s['train_seconds']:6.2f}s  "
        f"({s['devices']['count']} x {s['devices']['kind']})"
    )


def _time(cmd: list[str] | str) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{cmd} failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    bench = tyro.cli(Benchmark, args=argv, prog=PROG)
    from purerl.agents import registry

    registry.get(bench.agent)  # A clear error for an unknown agent.
    RunConfig(total_timesteps=bench.total_timesteps)  # Validates.
    print(
        f"purerl benchmark: {bench.agent} on {bench.env}, {bench.total_timesteps:,} steps per seed"
    )
    with tempfile.TemporaryDirectory() as tmp:
        separate = []
        for seed in bench.seeds:
            summary = _train(bench, seed, 1, f"{tmp}/seed{seed}")
            separate.append(summary)
            print(_line(f"seed {seed}", summary), flush=True)
        if separate:
            firsts = [s["final_return"][0] for s in separate]
            ended = [r for r in firsts if r is not None and not math.isnan(r)]
            sps = [s["steps_per_second"] for s in separate]
            print(
                f"{'one seed each':<18} min final_return {_return(min(ended, default=None))}, "
                f"median {statistics.median(sps):,.0f} steps/s"
            )
        if bench.num_seeds:
            summary = _train(
                bench, bench.seeds[0] if bench.seeds else 0, bench.num_seeds, f"{tmp}/vmapped"
            )
            print(_line(f"{bench.num_seeds} seeds vmapped", summary), flush=True)
        if bench.process_runs:
            cmd = [
                sys.executable,
                "-m",
                "purerl.experiments",  # The purerl command: built-in and plugin agents.
                bench.agent,
                "--env",
                bench.env,
                "--total-timesteps",
                str(bench.total_timesteps),
                "--quiet",
                *shlex.split(bench.extra),
            ]
            ours, theirs = [], []
            for i in range(bench.process_runs):  # A fresh run directory for each.
                ours.append(_time([*cmd, "--run-dir", f"{tmp}/process{i}"]))
                if bench.baseline_cmd:
                    theirs.append(_time(bench.baseline_cmd))
            print(
                f"whole process (import, compile, train): purerl "
                f"{', '.join(f'{t:.2f}' for t in ours)} s, median {statistics.median(ours):.2f} s"
            )
            if theirs:
                print(
                    f"baseline {bench.baseline_cmd!r}: "
                    f"{', '.join(f'{t:.2f}' for t in theirs)} s, "
                    f"median {statistics.median(theirs):.2f} s"
                )
                ratio = statistics.median(ours) / statistics.median(theirs)
                print(f"purerl takes {ratio:.3f} of the baseline's time (1/{1 / ratio:.2f})")


if __name__ == "__main__":
    cli_main(main)
