"""What every peer comparison shares: run one side in its own process, alternate the sides
over rounds, print the table.

A comparison script runs under purerl's Python. For each round it starts the purerl side
(`python -m purerl.experiments AGENT ...`, reading the run's `summary.json`) and the peer side
(the same script, run by the peer's own venv with `--peer-side`, printing one JSON line), so
each side imports only its own framework and both meet the same machine load. This module
imports neither purerl nor any peer: the peer's Python imports it too.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# Run flags that keep the purerl side to training alone: no files beyond the summary and
# metrics, no compile cache (the peers keep none), no checkpoints, no plot.
PURERL_RUN_FLAGS = (
    "--quiet",
    "--no-plot",
    "--no-tensorboard",
    "--no-compile-cache",
    "--checkpoint-every",
    "0",
)
RESULT_MARK = "PEER-RESULT "


@dataclass(frozen=True)
class Case:
    """One comparison: the purerl command line and the peer side's arguments.

    Attributes:
      name: the comparison's name on the command line (`ppo`, `dqn`, ...).
      title: one line saying what is compared, printed above the table.
      purerl_argv: `purerl AGENT [FLAGS ...]` without the run flags above.
      peer_args: the peer side's arguments after `NAME --peer-side`.
      peer_settings: the peer's settings, printed by `--dry-run` and above the table.
      notes: what could not be made equal, printed under the settings.
      purerl_run_flags: run flags added to `purerl_argv` (default: training alone, above).
      warm_compile_cache: the purerl side runs with a compile cache that a first run (not
        timed) has filled, as a user's second run of a configuration does.
    """

    name: str
    title: str
    purerl_argv: tuple[str, ...]
    peer_args: tuple[str, ...] = ()
    peer_settings: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    purerl_run_flags: tuple[str, ...] = PURERL_RUN_FLAGS
    warm_compile_cache: bool = False


@dataclass
class Round:
    """One side's figures in one round."""

    env_steps: int
    steps_per_second: float
    wall_seconds: float  # The whole process: Python start, imports, compile, train.
    compile_seconds: float | None = None
    versions: str = ""  # The packages that side ran with.
    extra: dict[str, Any] = field(default_factory=dict)


def default_peer_python(peer: str) -> str:
    """`$PEER_VENVS/PEER/bin/python`, PEER_VENVS defaulting to `peer-venvs` beside the repo."""
    root = os.environ.get("PEER_VENVS", str(REPO.parent / "peer-venvs"))
    return str(Path(root) / peer / "bin" / "python")


def positive(text: str) -> int:
    """An argparse type: a positive integer, or a clear error naming the value."""
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value


def parser(
    description: str, peer: str, cases: list[str], peer_python: str | None = None
) -> argparse.ArgumentParser:
    """The command line every comparison script takes; `peer_python` is the default Python
    of the peer side (the peer's venv where not given)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("case", choices=cases, help="which comparison to run")
    p.add_argument("--rounds", type=positive, default=3, help="alternating rounds (default 3)")
    p.add_argument(
        "--total-timesteps",
        type=positive,
        default=None,
        help="env steps per run on both sides (default: each comparison's own, printed)",
    )
    p.add_argument(
        "--peer-python",
        default=peer_python or default_peer_python(peer),
        help=f"the Python of the venv with {peer} installed (default: %(default)s; "
        "set PEER_VENVS to change the folder)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the settings both sides would use and check purerl accepts its flags; "
        "run nothing",
    )
    p.add_argument("--peer-side", action="store_true", help=argparse.SUPPRESS)
    return p


def emit(result: dict[str, Any]) -> None:
    """The peer side's answer: one JSON line the purerl side finds in its output."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def timed_jit(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, float]:
    """`(output, compile_seconds, run_seconds)` of `jax.jit(fn)(*args)`, compiled ahead of
    the timed call as purerl's trainer does, so the two split their time the same way."""
    import jax

    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compiled_at = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, compiled_at - start, time.perf_counter() - compiled_at


def check_purerl_argv(argv: tuple[str, ...]) -> str:
    """Parses `purerl AGENT FLAGS` as the command line would (with its presets) and returns
    the agent config it resolves to; raises SystemExit with purerl's message if a flag is
    wrong. This is the `--dry-run` check that the purerl side builds."""
    import dataclasses

    from purerl.experiments.cli import experiment_class, parse
    from purerl.experiments.presets import given_options, with_preset

    agent, flags = argv[0], list(argv[1:])
    args = parse(experiment_class(agent), flags, prog=f"purerl {agent}")
    run, config = with_preset(args.agent, args.run, given_options(flags), True)
    fields = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(config).items())
    return f"env={run.env!r}, total_timesteps={run.total_timesteps}; {fields}"


def run_purerl(
    argv: tuple[str, ...],
    run_flags: tuple[str, ...] = PURERL_RUN_FLAGS,
    compile_cache: str | None = None,
) -> Round:
    """Trains with `python -m purerl.experiments AGENT FLAGS` in a fresh process (with
    `compile_cache` as its --compile-cache-dir where given)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "purerl.experiments", *argv, *run_flags]
        cmd += ["--run-dir", f"{tmp}/run"]
        if compile_cache is not None:
            cmd += ["--compile-cache-dir", compile_cache]
        start = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if out.returncode:
            raise RuntimeError(f"purerl side failed: {shlex.join(cmd)}\n{out.stderr[-3000:]}")
        summary = json.loads(Path(f"{tmp}/run/summary.json").read_text())
    return Round(
        env_steps=summary["total_timesteps"] * len(summary["seeds"]),
        steps_per_second=summary["steps_per_second"],
        wall_seconds=wall,
        compile_seconds=summary["compile_seconds"],
        versions=versions("purerl", "jax", "flax", "gymnax", "gymnasium"),
        extra={"final_return": summary["final_return_mean"]},
    )


def run_peer(python: str, script: str, case: str, peer_args: tuple[str, ...]) -> Round:
    """Runs this comparison's peer side with the peer venv's Python in a fresh process."""
    cmd = [python, script, case, "--peer-side", *peer_args]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [x for x in out.stdout.splitlines() if x.startswith(RESULT_MARK)]
    if out.returncode or not lines:
        raise RuntimeError(
            f"peer side failed: {shlex.join(cmd)}\n{out.stdout[-1500:]}\n{out.stderr[-3000:]}"
        )
    result = json.loads(lines[-1][len(RESULT_MARK) :])
    return Round(
        env_steps=result.pop("env_steps"),
        steps_per_second=result.pop("steps_per_second"),
        wall_seconds=wall,
        compile_seconds=result.pop("compile_seconds", None),
        versions=result.pop("versions", ""),
        extra=result,
    )


def check_peer_python(python: str, peer: str) -> None:
    if not Path(python).exists():
        raise SystemExit(
            f"no Python at {python}: make the {peer} venv first (benchmarks/peers/README.md), "
            "or pass --peer-python"
        )


def versions(*packages: str) -> str:
    """`name version, ...` of the installed `packages` (those not installed left out)."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in packages:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def versions_of(python: str, *packages: str) -> str:
    """`versions(*packages)` as another Python (a peer's venv) has them."""
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
    code += f"from common import versions; print(versions(*{packages!r}))"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def _plain(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _cell(values: list[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def print_table(peer: str, sides: dict[str, list[Round]]) -> None:
    """A Markdown table of each side's rounds and medians, then the ratios."""
    print(
        "\n| side | env steps | env steps/s, each round | median env steps/s | "
        "median wall s | median compile s |\n| --- | --- | --- | --- | --- | --- |"
    )
    medians = {}
    for name, rounds in sides.items():
        sps = statistics.median(r.steps_per_second for r in rounds)
        wall = statistics.median(r.wall_seconds for r in rounds)
        compiles = [r.compile_seconds for r in rounds if r.compile_seconds is not None]
        medians[name] = (sps, wall)
        print(
            f"| {name} | {rounds[0].env_steps:,} | "
            f"{_cell([r.steps_per_second for r in rounds], ',.0f')} | {sps:,.0f} | "
            f"{wall:.1f} | {f'{statistics.median(compiles):.1f}' if compiles else '—'} |"
        )
    (ours, our_wall), (theirs, their_wall) = medians["purerl"], medians[peer]
    print(
        f"\npurerl / {peer}: {ours / theirs:.2f}x the env steps/s, "
        f"{our_wall / their_wall:.2f}x the wall time"
    )


def compare(case: Case, peer: str, args: argparse.Namespace, script: str) -> None:
    """Alternates the purerl and peer sides for `args.rounds` rounds and prints the table."""
    print(f"{case.title}\n")
    print(f"purerl: purerl {shlex.join((*case.purerl_argv, *case.purerl_run_flags))}")
    if case.warm_compile_cache:
        print("purerl: its compile cache filled by a first run, not timed")
    print(f"{peer}: {json.dumps(case.peer_settings)}")
    if case.notes:
        print(f"notes: {case.notes}")
    if args.dry_run:
        print(f"purerl resolves to: {check_purerl_argv(case.purerl_argv)}")
        return
    check_peer_python(args.peer_python, peer)
    with tempfile.TemporaryDirectory() as cache:
        compile_cache = cache if case.warm_compile_cache else None
        if compile_cache is not None:
            run_purerl(case.purerl_argv, case.purerl_run_flags, compile_cache)
        sides = alternate(case, peer, args, script, compile_cache)
    print(f"load average after: {load_average()}")
    print_table(peer, sides)
    print(
        f"versions: purerl side {sides['purerl'][0].versions}; "
        f"{peer} side {sides[peer][0].versions}"
    )


def alternate(
    case: Case, peer: str, args: argparse.Namespace, script: str, compile_cache: str | None
) -> dict[str, list[Round]]:
    """Each side's rounds, run in turns."""
    print(f"load average before: {load_average()}", flush=True)
    sides: dict[str, list[Round]] = {"purerl": [], peer: []}
    for i in range(args.rounds):
        # Alternate who goes first, so neither side always meets the other's leftovers.
        order = ["purerl", peer] if i % 2 == 0 else [peer, "purerl"]
        for name in order:
            if name == "purerl":
                result = run_purerl(case.purerl_argv, case.purerl_run_flags, compile_cache)
            else:
                result = run_peer(args.peer_python, script, case.name, case.peer_args)
            sides[name].append(result)
            print(
                f"round {i + 1} {name}: {result.env_steps:,} env steps, "
                f"{result.steps_per_second:,.0f} env steps/s, wall {result.wall_seconds:.1f} s"
                + "".join(f", {k} {_plain(v)}" for k, v in result.extra.items()),
                flush=True,
            )
    return sides
