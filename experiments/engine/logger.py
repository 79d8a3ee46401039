"""Where a run's metrics go besides `metrics.csv`: TensorBoard event files (tensorboardX),
optionally Weights & Biases, and the progress shown on the terminal."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

TENSORBOARD_DIR = "tensorboard"


class MetricsWriter:
    """Writes each logging interval's row to TensorBoard (`RUN_DIR/tensorboard`) and, when
    a project is named, to W&B. Training rows go under `train/`, evaluations under `eval/`.
    """

    def __init__(
        self,
        run_dir: Path,
        tensorboard: bool,
        wandb_project: str | None,
        config: dict[str, Any],
        resume: bool,
    ):
        self._tb = self._wandb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(Path(run_dir) / TENSORBOARD_DIR), flush_secs=30)
        if wandb_project:
            try:
                import wandb
            except ImportError:
                raise ValueError(
                    f"--wandb-project {wandb_project} needs Weights & Biases: pip install wandb"
                ) from None
            self._wandb = wandb.init(
                project=wandb_project,
                name=Path(run_dir).name,
                id=Path(run_dir).name,
                dir=str(run_dir),
                config=config,
                resume="allow" if resume else None,
            )

    def write(self, row: dict[str, float], prefix: str = "train") -> None:
        step = int(row["step"])
        values = {f"{prefix}/{k}": v for k, v in row.items() if k != "step" and _finite(v)}
        if self._tb is not None:
            for name, value in values.items():
                self._tb.add_scalar(name, value, step)
        if self._wandb is not None:
            self._wandb.log(values, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def format_return(value: float) -> str:
    """A mean return as shown on the terminal: two decimals, or "—" when no episode has
    ended yet (NaN; `summary.json` writes null)."""
    return "—" if math.isnan(value) else f"{value:.2f}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


class Progress:
    """Progress on the terminal: a rich progress bar (steps, steps/s, ETA, recent return)
    when stdout is a terminal, plain lines otherwise (logs, CI), nothing when quiet."""

    def __init__(self, total_steps: int, quiet: bool, start_steps: int = 0):
        self.total, self.quiet = total_steps, quiet
        self._bar = None
        if quiet or not sys.stdout.isatty():
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("[bold]steps"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[sps]} steps/s"),
            TextColumn("return {task.fields[ret]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        self._bar.start()
        self._task = self._bar.add_task(
            "train", total=total_steps, completed=start_steps, sps="-", ret="-"
        )
        self._started = time.perf_counter()

    def update(self, steps: int, row: dict[str, float]) -> None:
        if self.quiet:
            return
        ret = row["episode_return"]
        if self._bar is not None:
            self._bar.update(
                self._task,
                completed=steps,
                sps=f"{row['steps_per_second']:,.0f}",
                ret=format_return(ret),
            )
            return
        print(
            f"  {steps:>11,} / {self.total:,} steps | "
            f"{row['steps_per_second']:>9,.0f} steps/s | return {format_return(ret):>8}",
            flush=True,
        )

    def say(self, text: str) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
