"""Learning curves of run directories (the command `python -m purerl.experiments.plot RUN_DIR
[RUN_DIR ...] [--out FILE.png]` calls `main`).

Each run is one line: the mean episode return over its seeds against environment steps,
with a 95% confidence band over seeds (normal approximation, mean +- 1.96 standard errors)
when it has more than one seed. Reads each run's `returns.csv`.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

RETURNS_FILE = "returns.csv"
CURVE_FILE = "learning_curve.png"
LEGEND_INSIDE = 5  # Curves whose legend still fits inside the axes.


def write_returns(path: Path, steps: Sequence[int], returns: np.ndarray) -> None:
    """Writes per-seed returns `[intervals, seeds]` (NaN where no episode ended) in long form."""
    lines = ["step,seed,episode_return"]
    for step, row in zip(steps, returns, strict=True):
        lines += [f"{step},{seed},{value!r}" for seed, value in enumerate(row.tolist())]
    path.write_text("\n".join(lines) + "\n")


def read_returns(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """`(steps[I], returns[I, S])` of a run directory."""
    path = Path(run_dir) / RETURNS_FILE
    if not path.is_file():
        raise ValueError(f"{run_dir} has no {RETURNS_FILE}; is it a purerl run directory?")
    table: dict[int, dict[int, float]] = defaultdict(dict)
    with path.open() as f:
        for row in csv.DictReader(f):
            table[int(row["step"])][int(row["seed"])] = float(row["episode_return"])
    steps = np.array(sorted(table))
    seeds = sorted({s for row in table.values() for s in row})
    returns = np.array([[table[t].get(s, np.nan) for s in seeds] for t in steps])
    return steps, returns


def _label(run_dir: Path) -> str:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        return f"{summary['agent']} {summary['env']} ({run_dir.name})"
    except (OSError, ValueError, KeyError):
        return run_dir.name


def _groups(run_dir: Path, num_runs: int) -> list[tuple[str, slice]]:
    """The curves of a run: one over all its seeds, or one per configuration of a sweep
    (its runs are configuration-major in `returns.csv`, in `sweep_configs`' order)."""
    try:
        configs = json.loads((run_dir / "summary.json").read_text()).get("sweep_configs")
    except (OSError, ValueError):
        configs = None
    if not configs:
        return [(_label(run_dir), slice(None))]
    per = num_runs // len(configs)
    return [
        (", ".join(f"{k}={v:g}" for k, v in c.items()), slice(g * per, (g + 1) * per))
        for g, c in enumerate(configs)
    ]


def confidence_band(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(mean, lower, upper)` over seeds of `returns[I, S]`: the mean +- 1.96 standard errors,
    kept within the seeds' own range (a return above every seed's, above an env's maximum
    such as CartPole's 500, is no estimate of anything)."""
    with warnings.catch_warnings():  # All-NaN intervals (no episode ended yet).
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(returns, axis=1)
        count = np.sum(np.isfinite(returns), axis=1)
        sem = np.nanstd(returns, axis=1, ddof=1) / np.sqrt(np.maximum(count, 1))
        lower = np.maximum(mean - 1.96 * sem, np.nanmin(returns, axis=1))
        upper = np.minimum(mean + 1.96 * sem, np.nanmax(returns, axis=1))
    return mean, lower, upper


def _figure(width: float, height: float) -> Any:
    """A Matplotlib figure drawn by the Agg canvas, without pyplot's global state (so a
    warm-up in another thread cannot interfere)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def warm_up() -> None:
    """Imports Matplotlib and draws a small figure, loading its fonts: run in a thread
    while a run trains, it takes most of the cost of the final `plot` off the run's end."""
    fig = _figure(1, 1)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="warm-up")
    ax.fill_between([0, 1], [0, 0], [1, 1], alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.canvas.draw()


def plot(
    run_dirs: Sequence[str | Path], out: str | Path, labels: Sequence[str] | None = None
) -> Path:
    """Draws the learning curves of `run_dirs` into the PNG `out` (each labelled by its agent,
    env and folder, or by `labels`); returns its path."""
    curves = []
    for i, run_dir in enumerate(map(Path, run_dirs)):
        steps, returns = read_returns(run_dir)
        for label, columns in _groups(run_dir, returns.shape[1]):
            label = labels[i] if labels is not None else label
            curves.append((steps, returns[:, columns], label))
    # Up to LEGEND_INSIDE curves: the legend inside the axes; more would cover the curves,
    # so it goes below them, the figure taller by a line each.
    below = len(curves) > LEGEND_INSIDE
    fig = _figure(7, 4.5 + (0.2 * len(curves) if below else 0.0))
    ax = fig.subplots()
    for i, (steps, group, label) in enumerate(curves):
        # Matplotlib's ten colours, then again dashed, then dotted: the first 30 curves all
        # differ (past 30 the styles come round again).
        style = ("-", "--", ":")[i // 10 % 3]
        mean, lower, upper = confidence_band(group)
        (line,) = ax.plot(steps, mean, linestyle=style, label=f"{label}, {group.shape[1]} seed(s)")
        if group.shape[1] > 1:
            ax.fill_between(steps, lower, upper, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.grid(alpha=0.3)
    if below:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    else:
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="purerl plot",
        description="Plot learning curves (mean and 95% band over seeds) of purerl runs.",
    )
    parser.add_argument("run_dirs", nargs="+", help="run directories holding returns.csv")
    parser.add_argument("--out", help=f"PNG to write (default: FIRST_RUN_DIR/{CURVE_FILE})")
    args = parser.parse_args(argv)
    try:
        out = plot(args.run_dirs, args.out or Path(args.run_dirs[0]) / CURVE_FILE)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(out)
