"""`purerl tune` against one process per trial: the same trials, trained twice, side by side.

    python -m purerl.experiments.benchmark_tune --trials 32 --batch 8 [AGENT FLAGS]

First `purerl tune AGENT` trains the trials `--batch` at a time in one vmapped program;
then each of the same trials (the options the tune drew, in trial order) trains as its own
`purerl AGENT` process, one after another, as CleanRL-style tuning runs its trials. Both
sides get the same agent flags and seeds, and each side starts with an empty compile cache
of its own (in the output directory), so neither loads programs an earlier benchmark
compiled.

What the second side leaves out, and why that is CleanRL's tuner: it trains every trial to
its end. CleanRL's `Tuner` runs a trial's runs one after another (one per seed and env) and
asks Optuna's pruner only between them, after each finished run; with one run per trial
its pruner has nothing left to stop. It runs each run inside its own Python process with
`runpy`, where this side starts a process per trial: the process start and imports are
part of this side's time, and it prints them apart (the wall time less each run's compile
and training), so the ratio without them can be read off too.

Prints each side's wall time and CPU time (user and system, all processes and threads:
less dependent on the machine's other load than the wall time), the tune's trial states,
each side's best mean final return and whether it reaches `--target`, how far the two
sides' final returns of the same completed trial are apart, and the machine's load before
and after each side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_SEARCH = ["learning_rate=log:1e-4:3e-3", "gamma=0.95:0.999"]


def _timed(command: list[str]) -> tuple[float, float]:
    """Runs `command` (output to this process's stderr); its wall and CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(command, check=True, stdout=sys.stderr)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _trials(run_dir: Path, agent: str, env: str) -> list[Any]:
    """The tune's trials that count (not those asked again), in trial order."""
    import optuna

    study = optuna.load_study(
        study_name=f"{agent}-{env}", storage=f"sqlite:///{run_dir / 'study.db'}"
    )
    retried = {t.user_attrs.get("retry_of") for t in study.trials}
    return [t for t in study.trials if t.number not in retried and t.params]


def _flag(name: str, value: Any) -> list[str]:
    return [f"--{name.replace('_', '-')}", repr(value)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m purerl.experiments.benchmark_tune",
        description="Time purerl tune against one process per trial (the same trials). Other "
        "flags are the agent's (--total-timesteps, --num-seeds, ...).",
    )
    parser.add_argument("--agent", default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--search", nargs="+", default=DEFAULT_SEARCH)
    parser.add_argument("--pruner", default="median", help="the tune's --pruner")
    parser.add_argument("--target", type=float, default=500.0, help="the return to reach")
    parser.add_argument("--out", default=None, help="where the runs go (default: a temp dir)")
    args, flags = parser.parse_known_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="benchmark_tune_"))
    common = ["--env", args.env, "--quiet", "--no-plot", *flags]
    python = [sys.executable, "-m"]

    load = {"tune": [_load()]}
    tune_dir = out / "tune"
    tune_seconds, tune_cpu = _timed(
        [*python, "purerl.experiments.tune", args.agent, "--search", *args.search]
        + ["--trials", str(args.trials), "--batch", str(args.batch), "--pruner", args.pruner]
        + ["--run-dir", str(tune_dir), *common, "--compile-cache-dir", str(out / "cache_tune")]
    )
    load["tune"].append(_load())
    trials = _trials(tune_dir, args.agent, args.env)
    batches = [json.loads(p.read_text()) for p in sorted(tune_dir.glob("batch*/timing.json"))]
    tune_compile = sum(b["compile_seconds"] for b in batches)
    tune_train = sum(b["train_seconds"] for b in batches)
    tune_rest = tune_seconds - tune_compile - tune_train

    load["processes"] = [_load()]
    process_seconds = process_cpu = compile_seconds = train_seconds = 0.0
    process_returns = {}
    for trial in trials:
        run_dir = out / "processes" / f"trial{trial.number}"
        options = [f for name, value in trial.params.items() for f in _flag(name, value)]
        wall, cpu = _timed(
            [*python, f"purerl.experiments.{args.agent}", *options, "--run-dir", str(run_dir)]
            + [*common, "--compile-cache-dir", str(out / "cache_processes")]
        )
        process_seconds, process_cpu = process_seconds + wall, process_cpu + cpu
        summary = json.loads((run_dir / "summary.json").read_text())
        compile_seconds += summary["compile_seconds"]
        train_seconds += summary["train_seconds"]
        process_returns[trial.number] = sum(summary["final_return"]) / len(summary["final_return"])
    load["processes"].append(_load())

    complete = [t for t in trials if t.value is not None and t.state.name == "COMPLETE"]
    tune_best = max((t.value for t in complete), default=float("nan"))
    process_best = max(process_returns.values())
    both = [t for t in complete if t.number in process_returns]
    gap = max((abs(t.value - process_returns[t.number]) for t in both), default=float("nan"))
    states = [t.state.name.lower() for t in trials]
    tally = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
    starts = process_seconds - compile_seconds - train_seconds
    print(f"{len(trials)} trials of {args.agent} on {args.env} ({' '.join(flags)}); runs in {out}")
    print(f"  search {' '.join(args.search)}; pruner {args.pruner}")
    print(
        f"  purerl tune, {args.batch} at a time: {tune_seconds:7.1f} s wall, {tune_cpu:7.1f} s "
        f"CPU  ({tally}; best mean final return {tune_best:.1f}, reaches {args.target:g}: "
        f"{tune_best >= args.target}; load {' -> '.join(load['tune'])})"
    )
    print(
        f"    of which compiling {tune_compile:.1f} s ({len(batches)} batches, "
        f"{sum(b['intervals'] for b in batches)} intervals), training {tune_train:.1f} s, "
        f"the process start, imports, Optuna and writing {tune_rest:.1f} s"
    )
    print(
        f"  one process per trial:    {process_seconds:7.1f} s wall, {process_cpu:7.1f} s "
        f"CPU  (all trained to the end; best mean final return {process_best:.1f}, reaches "
        f"{args.target:g}: {process_best >= args.target}; load {' -> '.join(load['processes'])})"
    )
    print(
        f"    of which compiling {compile_seconds:.1f} s, training {train_seconds:.1f} s, "
        f"process starts, imports and writing {starts:.1f} s"
    )
    print(
        f"  ratio tune / processes: {tune_seconds / process_seconds:.2f}x wall, "
        f"{tune_cpu / process_cpu:.2f}x CPU; without the processes' starts "
        f"{tune_seconds / (process_seconds - starts):.2f}x wall; largest difference of a "
        f"completed trial's final return between the two: {gap:.2f}"
    )


if __name__ == "__main__":
    main()
