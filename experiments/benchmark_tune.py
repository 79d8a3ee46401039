"""`purerl tune` against one process per trial: the same trials, trained twice, side by side.

    python -m purerl.experiments.benchmark_tune --trials 32 --batch 8 [AGENT FLAGS]

First `purerl tune AGENT` trains the trials in batches of `--batch` (one vmapped program per
batch); then each of the same trials (the options the tune drew, in trial order) trains as
its own `purerl AGENT` process, one after another, as CleanRL-style tuning runs its trials.
Both sides get the same agent flags and seeds, and every trial on the second trains to its
end. Prints each side's wall time (process starts, compiles and all), their ratio, each
side's best mean final return and whether it reaches `--target`, how far the two sides' final
returns of the same trial are apart, and the machine's load before and after each side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_SEARCH = ["learning_rate=log:1e-4:3e-3", "gamma=0.95:0.999", "update_epochs=int:2:8"]


def _timed(command: list[str]) -> float:
    """Runs `command` (output to this process's stderr); its wall time in seconds."""
    t0 = time.perf_counter()
    subprocess.run(command, check=True, stdout=sys.stderr)
    return time.perf_counter() - t0


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
    tune_seconds = _timed(
        [*python, "purerl.experiments.tune", args.agent, "--search", *args.search]
        + ["--trials", str(args.trials), "--batch", str(args.batch), "--pruner", args.pruner]
        + ["--run-dir", str(tune_dir), *common]
    )
    load["tune"].append(_load())
    trials = _trials(tune_dir, args.agent, args.env)

    load["processes"] = [_load()]
    process_seconds, process_returns = 0.0, {}
    for trial in trials:
        run_dir = out / "processes" / f"trial{trial.number}"
        options = [f for name, value in trial.params.items() for f in _flag(name, value)]
        process_seconds += _timed(
            [*python, f"purerl.experiments.{args.agent}", *options, "--run-dir", str(run_dir)]
            + common
        )
        final = json.loads((run_dir / "summary.json").read_text())["final_return"]
        process_returns[trial.number] = sum(final) / len(final)
    load["processes"].append(_load())

    complete = [t for t in trials if t.value is not None and t.state.name == "COMPLETE"]
    tune_best = max((t.value for t in complete), default=float("nan"))
    process_best = max(process_returns.values())
    both = [t for t in complete if t.number in process_returns]
    gap = max((abs(t.value - process_returns[t.number]) for t in both), default=float("nan"))
    states = [t.state.name.lower() for t in trials]
    tally = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
    print(f"{len(trials)} trials of {args.agent} on {args.env} ({' '.join(flags)}); runs in {out}")
    print(
        f"  purerl tune, batches of {args.batch}: {tune_seconds:7.1f} s wall  ({tally}; "
        f"best mean final return {tune_best:.1f}, reaches {args.target:g}: "
        f"{tune_best >= args.target}; load {' -> '.join(load['tune'])})"
    )
    print(
        f"  one process per trial:    {process_seconds:7.1f} s wall  (all trained to the end; "
        f"best mean final return {process_best:.1f}, reaches {args.target:g}: "
        f"{process_best >= args.target}; load {' -> '.join(load['processes'])})"
    )
    print(
        f"  ratio tune / processes: {tune_seconds / process_seconds:.2f}x; largest difference "
        f"of a completed trial's final return between the two: {gap:.2f}"
    )


if __name__ == "__main__":
    main()
