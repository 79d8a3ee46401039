"""Hyperparameter sweeps in one compiled program (`--sweep NAME=V1,V2,...`).

Every configuration of the grid runs with the same `--num-seeds` seeds, and all of them are
vmapped together on the device loop: the agent is built inside the vmapped program with its
swept hyperparameters as traced values, so one compile serves the whole grid and a
configuration's run equals the separate run with the same values and seed. Only options
that are plain numbers inside the program can be swept (the agent's float options);
structural ones (network sizes, env counts, rollout lengths) change the program's shapes
and are refused with the list of those that can be.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import itertools
import typing
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np


class Sweep(NamedTuple):
    """A parsed sweep.

    Attributes:
      names: the swept option names, in the order given.
      grid: the configurations, each a tuple of values in `names`' order.
    """

    names: tuple[str, ...]
    grid: tuple[tuple[float, ...], ...]

    def values(self, seeds_per_config: int) -> np.ndarray:
        """`[configs * seeds, H]`: each vmapped run's values (configuration-major)."""
        return np.repeat(np.asarray(self.grid, np.float32), seeds_per_config, axis=0)

    def label(self, index: int) -> str:
        return ", ".join(f"{n}={v:g}" for n, v in zip(self.names, self.grid[index], strict=True))


def sweepable(config: Any) -> list[str]:
    """The float options of an agent config (those a sweep can vary)."""
    hints = typing.get_type_hints(type(config))
    return [f.name for f in dataclasses.fields(config) if hints[f.name] is float]


def parse_sweep(entries: tuple[str, ...], config: Any) -> Sweep:
    """`("learning_rate=1e-4,3e-4", "gamma=0.9,0.99")` as a `Sweep` over `config`'s options,
    with a clear error for an option that cannot be swept or a value it refuses."""
    allowed = sweepable(config)
    names, axes = [], []
    for entry in entries:
        name, sep, values = str(entry).partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            raise ValueError(
                f"--sweep {entry!r}: write NAME=V1,V2,... (e.g. learning_rate=1e-4,3e-4)."
            )
        if name not in allowed:
            what = "not an option of" if not hasattr(config, name) else "a structural option of"
            raise ValueError(
                f"--sweep {name}: {what} {type(config).__name__}, so it cannot be swept in one "
                f"program. Options that can: {', '.join(allowed)}. Sweep structural options "
                "(network sizes, env counts, ...) as separate runs."
            )
        if name in names:
            raise ValueError(f"--sweep {name} is given twice; list all its values in one.")
        try:
            axes.append(tuple(float(v) for v in values.split(",")))
        except ValueError:
            raise ValueError(f"--sweep {entry!r}: values must be numbers.") from None
        names.append(name)
    grid = tuple(itertools.product(*axes))
    for point in grid:  # The agent config's own checks, on every configuration.
        dataclasses.replace(config, **dict(zip(names, point, strict=True)))
    return Sweep(tuple(names), grid)


def with_values(config: Any, names: tuple[str, ...], row: Any) -> Any:
    """`config` with option `names[i]` set to `row[i]` (traced values inside the vmapped
    program; the values were checked by `parse_sweep`)."""
    swept = copy.copy(config)
    for i, name in enumerate(names):
        object.__setattr__(swept, name, row[i])
    return swept


def write_sweep(
    run_dir: Path,
    sweep: Sweep,
    seeds: list[int],
    final: np.ndarray,
    evaluated: np.ndarray,
) -> list[dict[str, Any]]:
    """Writes `RUN_DIR/sweep.csv` (one row per configuration and seed) and returns the
    configurations ranked by mean final return (best first)."""
    n = len(seeds)
    with open(run_dir / "sweep.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*sweep.names, "seed", "final_return", "eval_return"])
        for g, point in enumerate(sweep.grid):
            for i, seed in enumerate(seeds):
                run = g * n + i
                ev = float(evaluated[run]) if evaluated.size else float("nan")
                writer.writerow([*point, seed, float(final[run]), ev])
    ranked = []
    for g, point in enumerate(sweep.grid):
        runs = slice(g * n, (g + 1) * n)
        ranked.append(
            {
                **dict(zip(sweep.names, point, strict=True)),
                "final_return_mean": float(np.nanmean(final[runs])),
                "eval_return_mean": float(np.mean(evaluated[runs])) if evaluated.size else None,
            }
        )
    ranked.sort(key=lambda r: -np.nan_to_num(r["final_return_mean"], nan=-np.inf))
    return ranked


def _train_one(name: str, run: Any, config: Any) -> None:
    """One configuration and seed of a host-loop sweep, in its own process."""
    from purerl.agents import registry
    from purerl.experiments.engine.trainer import train

    train(registry.get(name), run, config)


def train_in_processes(entry: Any, run: Any, config: Any, sweep: Sweep) -> dict[str, Any]:
    """A sweep on a Python env (the host loop, one run per process): each configuration and
    seed trains as its own process, in `RUN_DIR/config{G}_seed{S}` (a whole run directory:
    `load_policy`, `--resume` and plots work on it), as many at a time as half the cores.
    `RUN_DIR` gets `sweep.csv`, the ranked summary and one PNG of every run's curve. Given
    `--resume RUN_DIR`, finished runs are kept, interrupted ones resume from their
    checkpoints and the rest start."""
    import json
    import multiprocessing
    import os
    import sys

    from purerl.experiments.engine.config import default_run_dir, run_seeds
    from purerl.experiments.engine.plot import CURVE_FILE, plot
    from purerl.experiments.engine.policy import write_config
    from purerl.experiments.engine.trainer import holds_run

    run_dir = Path(run.resume or run.run_dir or default_run_dir(entry.name, run.env))
    if not run.resume:
        if (run_dir / "sweep.csv").exists() or any(run_dir.glob("config*_seed*")):
            raise ValueError(
                f"{run_dir} already holds a sweep. Continue it with --resume {run_dir}, or "
                "choose another --run-dir."
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, entry.name, run, config)
    seeds = run_seeds(run)[: run.num_seeds]
    jobs = []
    for g, point in enumerate(sweep.grid):
        values = dict(zip(sweep.names, point, strict=True))
        for seed in seeds:
            job_dir = run_dir / f"config{g}_seed{seed}"
            resume = str(job_dir) if holds_run(job_dir) else None
            one = dataclasses.replace(
                run,
                sweep=(),
                seed=seed,
                num_seeds=1,
                run_dir=str(job_dir),
                resume=resume,
                quiet=True,
            )
            jobs.append((g, seed, job_dir, one, dataclasses.replace(config, **values)))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parallel = max(1, (cores or 1) // 2)
    say = (lambda *a: None) if run.quiet else (lambda *a: print(*a, flush=True))
    say(
        f"purerl {entry.name} sweep on {run.env} (a Python env): {len(sweep.grid)} "
        f"configurations x {len(seeds)} seed(s), one process each, {parallel} at a time; "
        f"run dir {run_dir}"
    )
    context = multiprocessing.get_context("spawn")  # A fresh JAX in each.
    running: list[tuple[Any, Any]] = []
    failed = []

    def finish(proc: Any, job: Any) -> None:
        proc.join()
        g, seed, job_dir = job[:3]
        summary_file = job_dir / "summary.json"
        if proc.exitcode != 0 or not summary_file.exists():
            failed.append(f"{sweep.label(g)}, seed {seed} (exit code {proc.exitcode}; {job_dir})")
            say(f"  failed: {failed[-1]}")
            return
        result = json.loads(summary_file.read_text())
        say(f"  {sweep.label(g)}, seed {seed}: final return {result['final_return_mean']:.2f}")

    for job in jobs:
        g, seed, job_dir, one, swept = job
        if (job_dir / "summary.json").exists():
            continue  # Finished before the sweep was resumed.
        while len(running) >= parallel:
            finish(*running.pop(0))
        proc = context.Process(target=_train_one, args=(entry.name, one, swept))
        proc.start()
        running.append((proc, job))
    for proc, job in running:
        finish(proc, job)
    if failed:
        raise ValueError(
            f"{len(failed)} of the sweep's runs failed: {'; '.join(failed)}. Their errors are "
            f"above; fix the cause and continue with --resume {run_dir} (finished runs are "
            "kept)."
        )
    results = [json.loads((job[2] / "summary.json").read_text()) for job in jobs]
    final = np.asarray([r["final_return_mean"] for r in results], np.float64)
    evaluated = np.asarray(
        [r["eval_return_mean"] for r in results] if run.eval_episodes else [], np.float64
    )
    ranked = write_sweep(run_dir, sweep, seeds, final, evaluated)
    summary = {
        "agent": entry.name,
        "env": run.env,
        "run_dir": str(run_dir),
        "loop": "host",
        "sweep": ranked,
        "sweep_configs": [dict(zip(sweep.names, p, strict=True)) for p in sweep.grid],
        "runs": [str(job[2]) for job in jobs],
        "final_return": final.tolist(),
        "final_return_mean": float(np.nanmean(final)),
        "eval_return": evaluated.tolist(),
        "eval_return_mean": float(np.mean(evaluated)) if evaluated.size else None,
        "run_config": dataclasses.asdict(run),
        "agent_config": dataclasses.asdict(config),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if run.plot:
        try:
            plot([job[2] for job in jobs], run_dir / CURVE_FILE)
        except Exception as e:  # A plotting problem must not fail a finished sweep.
            print(f"warning: could not draw {run_dir / CURVE_FILE}: {e}", file=sys.stderr)
    if not run.quiet:
        print("sweep, best first (mean final return over seeds):")
        for row in ranked:
            values = ", ".join(f"{k}={row[k]:g}" for k in sweep.names)
            print(f"  {values}: {row['final_return_mean']:.2f}")
    print(f"done: sweep of {len(jobs)} runs -> {run_dir / 'summary.json'}", flush=True)
    return summary
