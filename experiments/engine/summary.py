"""The end of a run: `summary.json` and the lines the console shows."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
from purerl.experiments.engine.config import Plan, RunConfig, run_seeds
from purerl.experiments.engine.logger import format_return
from purerl.experiments.engine.rundir import SUMMARY_FILE


def strict_json(value: Any) -> Any:
    """`value` with NaN and infinities as None (`null`), which strict JSON parsers accept."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value


@dataclasses.dataclass
class Timing:
    """Where a run's time went, in seconds."""

    compile: float = 0.0
    train: float = 0.0


def make_summary(
    name: str,
    run: RunConfig,
    config: Any,
    run_dir: Path,
    the_plan: Plan,
    mesh: Any,
    loop_kind: str,
    final: np.ndarray,
    eval_returns: np.ndarray,
    periodic_eval: list[dict[str, Any]],
    timing: Timing,
) -> dict[str, Any]:
    """The run's summary, as `summary.json` holds it."""
    runs = len(run_seeds(run))
    device = mesh.devices.flat[0]
    return {
        "agent": name,
        "env": run.env,
        "env_params": list(run.env_params),
        "run_dir": str(run_dir),
        "total_timesteps": the_plan.total_steps,
        "requested_timesteps": run.total_timesteps,
        "num_seeds": run.num_seeds,
        "seeds": run_seeds(run),
        "final_return": [float(x) for x in final],
        "final_return_mean": float(np.nanmean(final)) if np.isfinite(final).any() else np.nan,
        "eval_episodes": run.eval_episodes,
        "eval_return": [float(x) for x in eval_returns],
        "eval_return_mean": float(np.mean(eval_returns)) if run.eval_episodes else float("nan"),
        "periodic_eval": periodic_eval,
        "loop": loop_kind,
        "compile_seconds": timing.compile,
        "train_seconds": timing.train,
        "steps_per_second": the_plan.total_steps * runs / max(timing.train, 1e-9),
        "devices": {
            "count": int(mesh.devices.size),
            "processes": jax.process_count(),
            "kind": device.device_kind,
            "platform": device.platform,
        },
        "updates": the_plan.num_updates,
        "steps_per_update": the_plan.steps_per_update,
        "jax_version": jax.__version__,
        "run_config": dataclasses.asdict(run),
        "agent_config": dataclasses.asdict(config) if config is not None else None,
    }


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    (run_dir / SUMMARY_FILE).write_text(json.dumps(strict_json(summary), indent=2))


def print_sweep(ranked: list[dict[str, Any]], names: tuple[str, ...], num_seeds: int) -> None:
    """A sweep's configurations, best first, by mean final return over their seeds."""
    print(f"sweep, best first (mean final return over {num_seeds} seed(s) each):")
    for rank, row in enumerate(ranked, 1):
        values = ", ".join(f"{k}={row[k]:g}" for k in names)
        evaluated = row.get("eval_return_mean")
        extra = f", eval {format_return(evaluated)}" if evaluated is not None else ""
        print(f"  {rank}. {values}: {format_return(row['final_return_mean'])}{extra}")


def closing_line(summary: dict[str, Any], run_dir: Path, sweep: Any = None) -> str:
    """The one line a run ends with (the one `--quiet` keeps). A sweep ends with its best
    configuration; a run with its mean final return over seeds and each seed's."""
    final = summary["final_return"]
    if sweep is not None:
        best = summary["sweep"][0]
        values = ", ".join(f"{k}={best[k]:g}" for k in sweep.names)
        result = (
            f"best of {len(sweep.grid)} configurations: {values}, final return "
            f"{format_return(best['final_return_mean'])}"
        )
    else:
        result = (
            f"final return {format_return(summary['final_return_mean'])} (per seed "
            f"{', '.join(format_return(x) for x in final)})"
        )
    evaluated = (
        f"eval return {format_return(summary['eval_return_mean'])}, "
        if summary["eval_episodes"] and sweep is None
        else ""
    )
    return (
        f"done: {result}, {evaluated}{summary['steps_per_second']:,.0f} steps/s, compile "
        f"{summary['compile_seconds']:.1f}s, train {summary['train_seconds']:.1f}s -> "
        f"{run_dir / SUMMARY_FILE}"
    )
