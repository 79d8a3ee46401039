"""Benchmarks: train an agent and print the summary's figures. Speed is measured here, not in tests.

    python -m purerl.experiments.benchmark --agent ppo --seeds 0 1 2 3 4 --num-seeds 8
    python -m purerl.experiments.benchmark --agent ppo --process-runs 3 \\
        --baseline-cmd "python other_framework_ppo.py"

Each seed in `--seeds` trains alone (one seed per program); `--num-seeds N` also trains N
seeds vmapped in one program. `--process-runs K` times K whole processes of
`python -m purerl.experiments AGENT` (import, compile and train), alternating with
`--baseline-cmd` if given, and prints the ratio of their median wall times. `--profile`
compiles the run's device-loop program instead of training it and prints what one update
costs: XLA kernels, time per update and per env step, compile time.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Annotated, Any, NamedTuple

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
      profile: instead of training, compile the run's device-loop program (one logging
        interval of updates) and print its XLA kernels per update, its loops, the time per
        update and per env step, and the compile time; `--seeds` gives the seed.
      profile_intervals: intervals timed for `--profile` (after one untimed).
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
    profile: bool = False
    profile_intervals: int = 3


def _argv(bench: Benchmark, seed: int, num_seeds: int) -> list[str]:
    """The agent's command line for one of the benchmark's runs."""
    argv = [
        "--env",
        bench.env,
        "--total-timesteps",
        str(bench.total_timesteps),
        "--seed",
        str(seed),
        "--num-seeds",
        str(num_seeds),
        "--quiet",
        *shlex.split(bench.extra),
    ]
    if bench.num_devices is not None:
        argv += ["--num-devices", str(bench.num_devices)]
    return argv


def _train(bench: Benchmark, seed: int, num_seeds: int, run_dir: str) -> dict[str, Any]:
    from purerl.experiments.cli import agent_script

    _, main = agent_script(bench.agent)
    return main([*_argv(bench, seed, num_seeds), "--run-dir", run_dir])


# What `--profile` counts. XLA runs a compiled program on a CPU as a sequence of thunks and on
# a GPU as a sequence of kernel launches, one per instruction of each computation it executes:
# a fusion (many elementwise ops and reductions in one loop nest), a matmul (`dot`), a library
# call (`custom-call`), a `copy`, a sort, a collective, ... These instructions launch nothing:
# they name buffers, or are control flow whose computations are counted in their place.
_NO_KERNEL = frozenset(
    {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "call", "while"}
    | {"conditional"}
)
_KINDS = ("fusion", "dot", "custom-call", "copy")  # Counted apart; the rest are "other".
_HEADER = re.compile(r"^(?:ENTRY )?%([^\s(]+) \(")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%\S+ = .*? ([a-z][a-z0-9-]*)\(")
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')


class Computation(NamedTuple):
    """One computation of a compiled HLO module, as `--profile` sees it.

    Attributes:
      kernels: its own kernels by kind (`_KINDS`, or "other").
      runs: what it executes besides: `(kind, computations, trip count)` for each `call`
        ("call", the callee), `while` ("while", condition and body, the trip count XLA
        proved or None) and `conditional` ("conditional", its branches).
    """

    kernels: collections.Counter
    runs: list[tuple[str, tuple[str, ...], int | None]]


def parse_hlo(text: str) -> tuple[dict[str, Computation], str]:
    """The computations of a compiled module's text (`Compiled.as_text()`) and the name of
    its entry computation."""
    computations: dict[str, Computation] = {}
    entry = current = None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header and line.rstrip().endswith("{"):
            current = Computation(collections.Counter(), [])
            computations[header.group(1)] = current
            if line.startswith("ENTRY"):
                entry = header.group(1)
            continue
        instruction = _INSTRUCTION.match(line) if current is not None else None
        if instruction is None:
            continue
        op = instruction.group(1)
        if op == "call":
            current.runs.append(("call", (_named(line, "to_apply"),), 1))
        elif op == "while":
            trips = _TRIP_COUNT.search(line)
            names = (_named(line, "condition"), _named(line, "body"))
            current.runs.append(("while", names, int(trips.group(1)) if trips else None))
        elif op == "conditional":
            branches = re.search(r"branch_computations=\{([^}]*)\}", line)
            names = (
                re.findall(r"%([^,\s}]+)", branches.group(1))
                if branches
                else [_named(line, "true_computation"), _named(line, "false_computation")]
            )
            current.runs.append(("conditional", tuple(names), 1))
        elif op not in _NO_KERNEL:
            current.kernels[op if op in _KINDS else "other"] += 1
    if entry is None:
        raise ValueError("No ENTRY computation in this HLO text; pass Compiled.as_text().")
    return computations, entry


def _named(line: str, attribute: str) -> str:
    return re.search(attribute + r"=%([^,\s}]+)", line).group(1)


def executed_kernels(
    computations: dict[str, Computation], name: str, loops: bool = True
) -> collections.Counter:
    """Kernels one execution of computation `name` launches, by kind: its own, a loop's body
    and condition times its trip count (once where XLA proved none; none with `loops`
    False), the larger branch of a conditional."""
    total = collections.Counter(computations[name].kernels)
    for kind, names, trips in computations[name].runs:
        counts = [executed_kernels(computations, n, loops) for n in names]
        if kind == "while":
            if loops:  # The condition runs once more than the body.
                condition, body = counts
                for _ in range(trips or 1):
                    total.update(body)
                    total.update(condition)
                total.update(condition)
        elif kind == "conditional":
            total.update(max(counts, key=lambda c: c.total()))
        else:
            total.update(counts[0])
    return total


def loop_tree(computations: dict[str, Computation], name: str, depth: int = 0) -> list[str]:
    """One line per loop that computation `name` runs, indented by nesting: its trip count
    and the kernels of one iteration outside its inner loops. Sibling loops alike in all
    that are one line, counted (on a CPU each random draw is such a loop, of 5 rounds)."""
    return [
        line + (f" [{count} such loops]" if count > 1 and i == 0 else "")
        for lines, count in _loops(computations, name, depth).items()
        for i, line in enumerate(lines)
    ]


def _loops(computations: dict[str, Computation], name: str, depth: int) -> dict[tuple, int]:
    """The lines of each distinct loop tree under computation `name`, and how many."""
    loops: dict[tuple, int] = collections.Counter()
    for kind, names, trips in computations[name].runs:
        if kind != "while":
            for n in names:
                loops.update(_loops(computations, n, depth))
            continue
        condition, body = names
        own = executed_kernels(computations, body, loops=False)
        own.update(executed_kernels(computations, condition, loops=False))
        count = "?" if trips is None else str(trips)
        line = f"{'  ' * depth}loop x{count}: {_kinds(own)} per iteration, inner loops apart"
        loops[(line, *loop_tree(computations, body, depth + 1))] += 1
    return loops


def _kinds(counts: collections.Counter) -> str:
    parts = [f"{counts[k]} {k}" for k in (*_KINDS, "other") if counts[k]]
    return f"{counts.total()} kernels" + (f" ({', '.join(parts)})" if parts else "")


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


def profile(bench: Benchmark) -> None:
    """Builds the run `bench` describes as training would, compiles its device-loop program
    (one logging interval of updates: acting, env steps, the data path and learning), prints
    the kernels it launches per update with its loops, then times a few intervals."""
    from purerl import envs
    from purerl.agents import registry
    from purerl.experiments.cli import experiment_class, parse
    from purerl.experiments.engine import trainee
    from purerl.experiments.engine.build import build_loop
    from purerl.experiments.presets import given_options, with_preset

    argv = _argv(bench, bench.seeds[0] if bench.seeds else 0, max(1, bench.num_seeds))
    argv.append("--no-compile-cache")  # The compile time is the compiler's, not a cache read.
    args = parse(experiment_class(bench.agent), argv, prog=f"{PROG} --profile")
    run, config = with_preset(args.agent, args.run, given_options(argv), quiet=True)
    if envs.resolve(run.env)[0] == "host":
        raise ValueError(
            f"--profile compiles the device loop's program, and {bench.env} is a Python env "
            "(the host loop); profile a JAX environment (CartPole-v1, brax:..., ...)."
        )
    built = build_loop(run, trainee.registered(registry.get(bench.agent), config).build)
    try:
        _profile_loop(bench, built, run.num_seeds)
    finally:
        built.loop.close()


def _profile_loop(bench: Benchmark, built: Any, num_seeds: int) -> None:
    from purerl.experiments.engine.loop import program_options

    loop, updates = built.loop, built.plan.updates_per_interval
    start = time.perf_counter()
    runner = loop.init()  # Compiles the init and the interval step.
    compile_seconds = time.perf_counter() - start
    # The device loop keeps the interval step it compiled (`DeviceLoop.init`) as `_step`.
    computations, entry = parse_hlo(loop._step.as_text())
    total = executed_kernels(computations, entry)
    per_update = total.total() / updates
    steps = loop.recipe.env_steps_per_update * num_seeds
    print(f"one interval's program: {updates} updates of {steps:,} env steps")
    options = program_options(built.mesh.devices.flat[0].platform)
    print(f"  compiled with XLA options {options or 'none'} (engine.loop.program_options)")
    print(f"  {_kinds(total)} per interval, {per_update:,.1f} per update")
    for line in loop_tree(computations, entry):
        print(f"  {line}")
    runner, _ = loop.step(runner)  # Untimed: the first run of a program pays for its set-up.
    start = time.perf_counter()
    for _ in range(bench.profile_intervals):
        runner, _ = loop.step(runner)
    seconds = (time.perf_counter() - start) / (bench.profile_intervals * updates)
    print(
        f"  {seconds * 1e3:.3f} ms per update, {seconds / steps * 1e6:.3f} us per env step "
        f"({steps / seconds:,.0f} env steps/s), {seconds / per_update * 1e6:.2f} us per kernel; "
        f"compile {compile_seconds:.2f}s ({built.mesh.devices.size} x "
        f"{built.mesh.devices.flat[0].device_kind})"
    )


def main(argv: list[str] | None = None) -> None:
    bench = tyro.cli(Benchmark, args=argv, prog=PROG)
    from purerl.agents import registry

    registry.get(bench.agent)  # A clear error for an unknown agent.
    RunConfig(total_timesteps=bench.total_timesteps)  # Validates.
    print(
        f"purerl benchmark: {bench.agent} on {bench.env}, {bench.total_timesteps:,} steps per seed"
    )
    if bench.profile:
        profile(bench)
        return
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
