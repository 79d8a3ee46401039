"""Run features: the small pieces the trainer calls after every logging interval (metric
files, TensorBoard/W&B, progress, periodic evaluation, checkpoints, the non-finite check,
Ctrl-C). Each keeps its own state and saves and restores it with the checkpoint, so a new
feature is a new class here and one line in the trainer's list, never an edit to its loop.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from purerl.core import EpisodeStats
from purerl.experiments.engine import distributed
from purerl.experiments.engine.checkpoint import Checkpoints, decode_history, encode_history
from purerl.experiments.engine.config import RunConfig, run_seeds
from purerl.experiments.engine.logger import format_return
from purerl.experiments.engine.loop import IntervalOutput
from purerl.experiments.engine.plot import RETURNS_FILE, write_returns
from purerl.experiments.engine.policy import eval_key

DEFAULT_CHECKPOINT_SECONDS = 60.0


@dataclasses.dataclass
class Interval:
    """One finished logging interval, as the features see it.

    Attributes:
      index: the interval's number (0-based).
      steps: env steps per seed after it.
      previous: env steps per seed before it.
      last: whether it is the run's last.
      output: what the loop returned (metrics and episode statistics, `[updates, seeds]`).
      row: its line of `metrics.csv`.
      runner: the loop's state after it.
    """

    index: int
    steps: int
    previous: int
    last: bool
    output: IntervalOutput
    row: dict[str, float]
    runner: Any


class Feature:
    """A run feature. `key` names its state in checkpoints (None: it keeps none)."""

    key: str | None = None

    def on_interval(self, interval: Interval) -> None:
        pass

    def state(self) -> Any:
        return None

    def load(self, state: Any) -> None:
        pass

    def close(self) -> None:
        pass


def interval_row(output: IntervalOutput, steps: int, sps: float) -> dict[str, float]:
    """An interval's line of `metrics.csv`: steps, speed, the episodes' mean return and
    length, and each learner metric's mean."""
    episodes = output.episodes
    count = episodes.count.sum()
    row = {
        "step": steps,
        "steps_per_second": sps,
        "episode_return": float(episodes.return_sum.sum() / count) if count else float("nan"),
        "episode_length": float(episodes.length_sum.sum() / count) if count else float("nan"),
        "episodes": float(count),
    }
    for k, v in output.metrics.items():
        row[k] = float(np.mean(v))
    return row


def write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join(repr(r.get(k, "")) for k in keys) for r in rows]
    path.write_text("\n".join(lines) + "\n")


class MetricFiles(Feature):
    """`metrics.csv` (a row per interval) and `returns.csv` (each seed's mean return per
    interval), rewritten each interval so they can be read and plotted mid-run; keeps every
    update's episode statistics for the summary's final return. With no `run_dir` (the other
    processes of a multi-host run) it only keeps them."""

    key = "metric_files"

    def __init__(self, run_dir: Path | None):
        self.run_dir = run_dir
        self.rows: list[dict[str, float]] = []
        self.episodes: list[EpisodeStats] = []

    def on_interval(self, interval: Interval) -> None:
        self.rows.append(interval.row)
        self.episodes.append(interval.output.episodes)
        if self.run_dir is None:
            return
        write_csv(self.run_dir / "metrics.csv", self.rows)
        returns = np.stack([seed_returns(e) for e in self.episodes])
        write_returns(self.run_dir / RETURNS_FILE, [r["step"] for r in self.rows], returns)

    def state(self) -> Any:
        history = [{k: np.asarray(v) for k, v in e._asdict().items()} for e in self.episodes]
        return {"rows": self.rows, "episodes": encode_history(history)}

    def load(self, state: Any) -> None:
        self.rows = list(state["rows"])
        self.episodes = [EpisodeStats(**h) for h in decode_history(state["episodes"])]

    def final_return(self) -> np.ndarray:
        """Mean return of the episodes that ended in the last 10% of updates, per seed."""
        stacked = EpisodeStats(*(np.concatenate(x) for x in zip(*self.episodes, strict=True)))
        num_updates = stacked.count.shape[0]
        tail = slice(num_updates - max(1, num_updates // 10), None)
        count = stacked.count[tail].sum(0)
        total = stacked.return_sum[tail].sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def seed_returns(episodes: EpisodeStats) -> np.ndarray:
    """Mean return of the episodes that ended in one interval, per seed (NaN if none)."""
    count = episodes.count.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, episodes.return_sum.sum(0) / np.maximum(count, 1), np.nan)


class FiniteCheck(Feature):
    """Stops the run with a clear error when a learner metric becomes NaN or infinite."""

    def __init__(self, agent: str, run_dir: Path):
        self.agent, self.run_dir = agent, run_dir

    def on_interval(self, interval: Interval) -> None:
        for name, value in interval.output.metrics.items():
            if not np.all(np.isfinite(value)):
                raise FloatingPointError(
                    f"{self.agent}: metric {name!r} became non-finite in logging interval "
                    f"{interval.index} (the loss diverged). Lower the learning rate or enable "
                    f"gradient clipping. The metrics up to here are in "
                    f"{self.run_dir / 'metrics.csv'}."
                )


class Writers(Feature):
    """TensorBoard event files and W&B (see `logger.MetricsWriter`)."""

    def __init__(self, run_dir: Path, run: RunConfig, resumed: bool):
        from purerl.experiments.engine.logger import MetricsWriter

        self.writer = MetricsWriter(
            run_dir, run.tensorboard, run.wandb_project, {"run": dataclasses.asdict(run)}, resumed
        )

    def on_interval(self, interval: Interval) -> None:
        self.writer.write(interval.row)

    def close(self) -> None:
        self.writer.close()


class ProgressFeature(Feature):
    """The progress bar or lines (see `logger.Progress`)."""

    def __init__(self, total_steps: int, quiet: bool, start_steps: int):
        from purerl.experiments.engine.logger import Progress

        self.progress = Progress(total_steps, quiet, start_steps)

    def on_interval(self, interval: Interval) -> None:
        self.progress.update(interval.steps, interval.row)

    def say(self, text: str) -> None:
        self.progress.say(text)

    def close(self) -> None:
        self.progress.close()


class Evaluator:
    """Deterministic evaluation episodes of every seed, on fresh environments apart from
    the training ones, with the loop's evaluator (compiled once)."""

    def __init__(self, loop: Any, run: RunConfig):
        self.run, self.episodes = run, run.eval_episodes or 10
        self._evaluate = loop.evaluator(self.episodes, run.eval_epsilon)

    def __call__(self, states: Any, step: int | None = None) -> np.ndarray:
        """Each seed's mean return after `step` env steps (None: at the end, with the keys
        `load_policy`'s users replay, `eval_key(seed)`)."""
        means = []
        # One run at a time, as load_policy replays it.
        for i, seed in enumerate(run_seeds(self.run)):
            state = jax.tree.map(lambda x, i=i: x[i], states)
            key = eval_key(seed)
            if step is not None:
                key = jax.random.fold_in(key, step)
            means.append(float(np.mean(self._evaluate(state, key, seed))))
        return np.asarray(means)


class PeriodicEvaluation(Feature):
    """`--eval-every`: evaluation episodes at the end of each interval that crosses a
    multiple of it, to `eval.csv`, TensorBoard's `eval/` and the summary. Without `writers`
    and `progress` (the other processes of a multi-host run) it only takes part in reading
    the agent states."""

    key = "eval_rows"

    def __init__(
        self,
        run_dir: Path,
        run: RunConfig,
        evaluator: Callable[[], Evaluator],
        agent_states: Callable[[Any], Any],
        writers: Writers | None,
        progress: ProgressFeature | None,
    ):
        self.run_dir, self.run, self.writers, self.progress = run_dir, run, writers, progress
        self.evaluator, self.agent_states = evaluator, agent_states
        self.rows: list[dict[str, float]] = []

    def on_interval(self, interval: Interval) -> None:
        every = self.run.eval_every
        if not every or interval.steps // every <= interval.previous // every:
            return
        # The last interval's evaluation uses the keys of the final one (`--eval-episodes`),
        # so a run that has both reports one score for its final policy, not two.
        step = None if interval.last else interval.steps
        states = self.agent_states(interval.runner)  # Collective with runs over hosts.
        if self.writers is None:  # Another process of a multi-host run: process 0 evaluates.
            return
        returns = self.evaluator()(states, step)
        seed = self.run.seed
        self.rows.append(
            {"step": interval.steps, "eval_return": float(np.mean(returns))}
            | {f"eval_return_seed{seed + i}": float(r) for i, r in enumerate(returns)}
        )
        write_csv(self.run_dir / "eval.csv", self.rows)
        self.writers.writer.write(self.rows[-1], "eval")
        mean = format_return(float(np.mean(returns)))
        self.progress.say(f"  eval after {interval.steps:,} steps: return {mean}")

    def state(self) -> Any:
        return self.rows

    def load(self, state: Any) -> None:
        self.rows = list(state)


class StopRequest(Feature):
    """Turns Ctrl-C into a request honoured at the end of the logging interval (after the
    checkpoint saved there). Only in the main thread, where signals arrive."""

    def __init__(self, run_dir: Path, checkpointing: Callable[[], bool]):
        self.run_dir, self.checkpointing = run_dir, checkpointing
        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # A second Ctrl-C: stop now.
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nstopping at the end of this logging interval (Ctrl-C again to abort)...",
            file=sys.stderr,
            flush=True,
        )

    def on_interval(self, interval: Interval) -> None:
        if self.requested:
            # Shown after "interrupted: " (`cli.cli_main`).
            raise KeyboardInterrupt(
                f"stopped after {interval.steps:,} steps; continue with --resume {self.run_dir}"
                if self.checkpointing()
                else f"stopped after {interval.steps:,} steps; checkpoints were off, so it "
                "cannot be resumed"
            )

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class CheckpointFeature(Feature):
    """Saves the whole training state every `--checkpoint-every` env steps (default: a tenth
    of the run, at most once a minute), at the end of every run (so a finished run can be
    extended), and before a Ctrl-C stop; never with `--checkpoint-every 0`. Orbax is imported
    only when a checkpoint is first due."""

    def __init__(
        self,
        run_dir: Path,
        run: RunConfig,
        total_steps: int,
        stop: StopRequest,
        host_state: Callable[[Interval], dict[str, Any]],
        checkpoints: Checkpoints | None = None,
    ):
        self.run_dir, self.run, self.stop, self.host_state = run_dir, run, stop, host_state
        every = run.checkpoint_every
        self.every = max(1, total_steps // 10) if every is None else every
        self.checkpoints = checkpoints
        self.last_save = time.perf_counter()

    def on_interval(self, interval: Interval) -> None:
        every = self.every
        periodic = bool(every) and interval.steps // every > interval.previous // every
        if self.run.checkpoint_every is None:  # The default: no more than once a minute.
            periodic &= time.perf_counter() - self.last_save >= DEFAULT_CHECKPOINT_SECONDS
        # The last interval always saves (unless checkpoints are off), so that any finished
        # run can be extended with --resume.
        final = interval.last
        due = bool(every) and (final or self.stop.requested or periodic)
        if distributed.process_count() > 1:  # Orbax saves collectively: all save, or none.
            self.stop.requested, due = distributed.agree([self.stop.requested, due])
        if due:
            self.last_save = time.perf_counter()
            if self.checkpoints is None:
                self.checkpoints = Checkpoints(self.run_dir, self.run.keep_checkpoints)
            self.checkpoints.save(interval.index, interval.runner, self.host_state(interval))

    def saved(self) -> bool:
        return self.checkpoints is not None and self.checkpoints.manager.latest_step() is not None

    def close(self) -> None:
        if self.checkpoints:
            self.checkpoints.close()  # Lets a save in flight finish, whatever stopped the run.
