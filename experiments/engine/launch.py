"""Launching a registered agent's run: one program (any seeds and `--sweep` grid vmapped
together on the device loop), or, for a sweep on a Python env (the host loop trains one run
per process), one process per configuration and seed."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from purerl import envs
from purerl.agents import registry
from purerl.experiments.engine import rundir, summary, trainee
from purerl.experiments.engine.config import default_run_dir, run_seeds
from purerl.experiments.engine.logger import format_return
from purerl.experiments.engine.plot import CURVE_FILE, plot
from purerl.experiments.engine.sweep import Sweep, parse_sweep, write_sweep
from purerl.experiments.engine.trainer import TrainResult, train


def launch(entry: registry.Entry, run: Any, config: Any) -> TrainResult:
    """Trains the registered agent `entry` as `run` says."""
    if run.sweep and envs.resolve(run.env)[0] == "host":
        return train_in_processes(entry, run, config, parse_sweep(run.sweep, config))
    return train(entry, run, config)


def _train_one(name: str, source: str, run: Any, config: Any) -> None:
    """One configuration and seed of a host-loop sweep, in its own process."""
    try:
        entry = registry.get(name)
    except ValueError:  # Registered in the parent's process only: rebuilt from its source.
        entry = registry.Entry(name, source)
    train(entry, run, config)


def train_in_processes(entry: registry.Entry, run: Any, config: Any, sweep: Sweep) -> TrainResult:
    """A sweep on a Python env (the host loop, one run per process): each configuration and
    seed trains as its own process, in `RUN_DIR/config{G}_seed{S}` (a whole run directory:
    `load_policy`, `--resume` and plots work on it), as many at a time as half the cores.
    `RUN_DIR` gets `sweep.csv`, the ranked summary and one PNG of every run's curve. Given
    `--resume RUN_DIR`, finished runs are kept, interrupted ones resume from their
    checkpoints and the rest start."""
    run_dir = Path(run.resume or run.run_dir or default_run_dir(entry.name, run.env))
    if not run.resume:
        if (run_dir / "sweep.csv").exists() or any(run_dir.glob("config*_seed*")):
            raise ValueError(
                f"{run_dir} already holds a sweep. Continue it with --resume {run_dir}, or "
                "choose another --run-dir."
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_config(run_dir, run, trainee.registered(entry, config).record, config)
    seeds = run_seeds(run)[: run.num_seeds]
    jobs = []
    for g, point in enumerate(sweep.grid):
        values = dict(zip(sweep.names, point, strict=True))
        for seed in seeds:
            job_dir = run_dir / f"config{g}_seed{seed}"
            resume = str(job_dir) if rundir.holds_run(job_dir) else None
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
        final = format_return(result["final_return_mean"])
        say(f"  {sweep.label(g)}, seed {seed}: final return {final}")

    for job in jobs:
        g, seed, job_dir, one, swept = job
        if (job_dir / "summary.json").exists():
            continue  # Finished before the sweep was resumed.
        while len(running) >= parallel:
            finish(*running.pop(0))
        proc = context.Process(target=_train_one, args=(entry.name, entry.source, one, swept))
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
    result = {
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
    summary.write_summary(run_dir, result)
    if run.plot:
        try:
            plot([job[2] for job in jobs], run_dir / CURVE_FILE)
        except Exception as e:  # A plotting problem must not fail a finished sweep.
            print(f"warning: could not draw {run_dir / CURVE_FILE}: {e}", file=sys.stderr)
    if not run.quiet:
        summary.print_sweep(ranked, sweep.names, len(seeds))
    best = ranked[0]
    values = ", ".join(f"{k}={best[k]:g}" for k in sweep.names)
    print(
        f"done: sweep of {len(jobs)} runs; best of {len(sweep.grid)} configurations: {values}, "
        f"final return {format_return(best['final_return_mean'])} -> "
        f"{run_dir / rundir.SUMMARY_FILE}",
        flush=True,
    )
    return TrainResult(result, None, run_dir)
