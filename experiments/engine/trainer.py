"""The trainer: runs a run's logging intervals on the loop its environment needs, through
the run features (metric files, progress, evaluation, checkpoints, Ctrl-C), and returns
what it trained.

`train` trains a registered agent with its config (and a `--sweep` grid of its options);
`train_agent` trains an agent a researcher wrote, with everything the built-in agents get.
Both return a `TrainResult`: the summary and each seed's trained agent state.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from purerl import envs
from purerl.envs.host import HostEnvError
from purerl.experiments.engine import distributed, restore, rundir, summary, trainee
from purerl.experiments.engine.build import Built, build_loop, run_plan, sizes
from purerl.experiments.engine.checkpoint import Checkpoints
from purerl.experiments.engine.config import RunConfig, run_seeds
from purerl.experiments.engine.evaluate import check_eval_epsilon
from purerl.experiments.engine.features import (
    CheckpointFeature,
    Evaluator,
    Feature,
    FiniteCheck,
    Interval,
    MetricFiles,
    PeriodicEvaluation,
    ProgressFeature,
    StopRequest,
    Writers,
    interval_row,
)
from purerl.experiments.engine.logger import format_return
from purerl.experiments.engine.plot import CURVE_FILE, plot, warm_up
from purerl.experiments.engine.policy import save_policy
from purerl.experiments.engine.sweep import Sweep, parse_sweep, with_values, write_sweep
from purerl.replay.base import DataPath, Schedule


@dataclasses.dataclass(frozen=True)
class TrainResult(Mapping):
    """What a run trained: its summary and each seed's final agent state.

    Reads as the summary dict too (`result["final_return"]`), as `train` returned before.

    Attributes:
      summary: the run's summary (also in `RUN_DIR/summary.json`).
      agent_states: each run's final agent state, leaves `[seeds, ...]` (seeds times sweep
        configurations), on the host; the states `policy.msgpack` holds. None where the runs
        trained in other processes (a sweep on a host env).
      run_dir: the run directory.
    """

    summary: dict[str, Any]
    agent_states: Any
    run_dir: Path

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.summary)

    def __len__(self) -> int:
        return len(self.summary)

    def state(self, seed_index: int = 0) -> Any:
        """One run's agent state (leaves without the seeds axis), to act with."""
        return jax.tree.map(lambda x: x[seed_index], self.agent_states)


def train(entry: Any, run: RunConfig, config: Any) -> TrainResult:
    """Trains the registered agent `entry` with `config` (and `run.sweep`'s grid of its
    options, if any, vmapped in one program on the device loop)."""
    who = trainee.registered(entry, config)
    if not run.sweep:
        return train_trainee(who, run)
    grid = parse_sweep(run.sweep, config)
    if run.normalize_rewards and "gamma" in grid.names:
        raise ValueError(
            "--normalize-rewards scales rewards by returns discounted with one gamma, so "
            "it cannot be combined with --sweep gamma; sweep gamma without it."
        )

    def swept(context: Any) -> Any:
        return lambda row: entry.recipe(with_values(config, grid.names, row), context)

    return train_trainee(who, run, (grid, swept))


def train_agent(
    agent: trainee.Made,
    data: DataPath | None = None,
    schedule: Schedule | None = None,
    run: RunConfig | None = None,
    *,
    num_envs: int | None = None,
    discount: float | None = None,
    name: str | None = None,
    resume: str | Path | None = None,
) -> TrainResult:
    """Trains an agent of your own on either loop (chosen by `run.env`), with the logs,
    checkpoints, evaluation, saved policy and summary the built-in agents get.

    Args:
      agent: an `Agent(init, act, learn)` (with `data` and `schedule`), a `purerl.Recipe`,
        or a factory that returns either: a function (called with no arguments, or with the
        run's `purerl.Context` where it takes one) or its `"module:function"`. An
        importable factory is recorded in `config.json`, so `load_policy`, `enjoy`,
        `--resume` and `--init-from` rebuild the agent without this code. Make its `learn`
        average gradients over `purerl.core.DEVICE_AXIS` to train data-parallel.
      data: its data path (`purerl.replay.on_policy()`, `uniform_replay(...)`, ...), sized
        per device, where `agent` is an Agent.
      schedule: rollout length, gradient steps per update, warm-up steps.
      run: the run settings (`RunConfig(env=..., total_timesteps=...)`).
      num_envs: environments over all devices (default: the Recipe's, else 8).
      discount: the agent's discount, for `--normalize-rewards` (default: the Recipe's,
        else 0.99).
      name: the agent's name in the run directory and the summary (default "custom"; a
        resumed run keeps its own).
      resume: a run directory of this agent to continue from its newest checkpoint, with
        the run config it was started with; a `run` given with it extends the run to its
        `total_timesteps` (where that is more than it has) and may set `quiet`.

    Returns:
      The `TrainResult`: summary and trained agent states.
    """
    saved = rundir.read_config(resume, "resume") if resume is not None else None
    if saved is not None and name not in (None, saved["agent"]):
        raise ValueError(
            f"resume={resume} is a run of {saved['agent']!r}, not {name!r}; leave out name= "
            "(a resumed run keeps its own)."
        )
    name = saved["agent"] if saved is not None else name or "custom"
    who = trainee.user(agent, data, schedule, num_envs=num_envs, discount=discount, name=name)
    if saved is not None:  # The run's own config; `run` may only extend it (and quiet it).
        quiet = run.quiet if run is not None else False
        longer = None
        if run is not None and run.total_timesteps != saved["run"]["total_timesteps"]:
            longer = run.total_timesteps
        run = resumed_run(saved, str(resume), longer, who.build, quiet=quiet)
    run = run or RunConfig()
    if run.sweep:
        raise ValueError(
            "--sweep varies a registered agent's config options; an agent given to "
            "purerl.train has none to vary. Build one agent per value and train each."
        )
    return train_trainee(who, run)


def resumed_run(
    saved: dict[str, Any], run_dir: str, total_timesteps: int | None, build: Any, **given: Any
) -> RunConfig:
    """The run config a run was started with, set to resume it; extended to
    `total_timesteps` env steps where given (refused unless that is more than it has).
    `given` are settings of this process's own (`quiet`, a multi-host process's place) that
    the resume takes. A resume that cannot go on is refused before anything is written."""
    run = RunConfig(**{**saved["run"], "resume": run_dir, "run_dir": run_dir, **given})
    host = envs.resolve(run.env)[0] == "host"
    before = run_plan(run, sizes(build), host)
    extending = total_timesteps is not None
    if extending:
        run = restore.extended(run, before, total_timesteps)
    path = Path(run_dir)
    restore.check_resumable(path, (path / rundir.SUMMARY_FILE).exists(), extending)
    if extending:
        print(
            f"note: extending {run_dir} from {before.total_steps:,} to {run.total_timesteps:,} "
            "env steps per seed. A decaying learning-rate schedule (and any other horizon set "
            "by the run's length) is stretched over the new length from here on.",
            file=sys.stderr,
        )
    return run


def train_trainee(
    who: trainee.Trainee,
    run: RunConfig,
    sweep: tuple[Sweep, Any] | None = None,
) -> TrainResult:
    """Trains `who` on the loop `run.env` needs."""
    built = build_loop(run, who.build, sweep)
    try:
        return _Run(who, run, built, sweep[0] if sweep else None).train()
    finally:
        built.loop.close()


class _Run:
    """One run, from its directory to its summary. `train` is the algorithm of a run."""

    def __init__(
        self,
        who: trainee.Trainee,
        run: RunConfig,
        built: Built,
        sweep: Sweep | None,
    ):
        self.who, self.run, self.built, self.sweep = who, run, built, sweep
        self.loop, self.plan = built.loop, built.plan
        self.primary = distributed.is_primary()  # Process 0 alone writes the run directory.
        self.timing = summary.Timing()
        self.per_interval = self.plan.updates_per_interval * self.plan.steps_per_update

    def train(self) -> TrainResult:
        self.run_dir = self.start()
        runner = self.compile()
        runner, start = self.starting_point(runner)
        features = self.features(start)
        runner = self.intervals(runner, start, features)
        return self.finish(runner, features)

    def say(self, *words: Any) -> None:
        if self.primary and not self.run.quiet:
            print(*words, flush=True)

    # The run's steps --------------------------------------------------------------------
    def start(self) -> Path:
        """Checks the run before anything is written, makes its directory and says what runs
        where. The saved config names the devices it ran on, so its checkpoints load back
        alike; how the processes were launched is not the run's."""
        run, mesh = self.run, self.built.mesh
        if distributed.process_count() > 1 and not run.resume and not run.run_dir:
            raise ValueError(
                "A multi-host run needs --run-dir (the same on every process, on storage they "
                "all see): its default name holds the start time, which the processes may "
                "not share."
            )
        if run.resume:  # Refused before anything is written into the run.
            restore.require_checkpoint(Path(run.resume))
        if run.eval_epsilon:  # Refused now, not after training.
            space = envs.spec(run.env, run.env_params).action_space
            check_eval_epsilon(run.eval_epsilon, space)
        self.saved_run = dataclasses.replace(
            run,
            num_devices=int(mesh.devices.size),
            spread_runs=bool(getattr(self.loop, "spread", run.spread_runs)),
            coordinator=None,
            num_processes=None,
            process_id=None,
        )
        run_dir = rundir.prepare(
            self.who.name, self.saved_run, self.who.record, self.who.config, self.primary
        )
        distributed.barrier("purerl: run directory made")
        runs = len(run_seeds(run))
        configs = f" x {runs // run.num_seeds} configurations" if self.sweep else ""
        params = f" ({', '.join(run.env_params)})" if run.env_params else ""
        device = mesh.devices.flat[0]
        self.say(
            f"purerl {self.who.name} on {run.env}{params}: {self.plan.total_steps:,} steps x "
            f"{run.num_seeds} seed(s){configs}; {self.loop.name}: {self.built.where} "
            f"{mesh.devices.size} {device.platform} device(s); run dir {run_dir}"
        )
        return run_dir

    def compile(self) -> Any:
        """The initial runner, its programs compiled (said, with the time it took)."""
        if self.primary and not self.run.quiet:
            print("  compiling ...", end="", flush=True)
        t0 = time.perf_counter()
        try:
            runner = self.loop.init()
        except (jax.errors.TracerBoolConversionError, jax.errors.ConcretizationTypeError) as e:
            if not self.sweep:
                raise
            raise ValueError(
                f"--sweep {', '.join(self.sweep.names)}: {self.who.name} decides its program's "
                "control flow or shapes by one of these options, so it cannot be swept in one "
                "program; run its values as separate runs."
            ) from e
        finally:
            if self.primary and not self.run.quiet:
                print(f" {time.perf_counter() - t0:.1f}s", flush=True)
        self.timing.compile = time.perf_counter() - t0
        return runner

    def starting_point(self, runner: Any) -> tuple[Any, int]:
        """The runner to train from, and the first interval: a resumed run's checkpoint, a
        run started from another's agent (`--init-from`), or the fresh one."""
        self.host: dict[str, Any] = {}
        self.checkpoints = None  # Made on first use: orbax's import costs ~0.4 s.
        if self.run.resume:
            self.checkpoints = Checkpoints(self.run_dir, self.run.keep_checkpoints)
            runner, self.host = restore.resume(
                self.checkpoints, self.loop, runner, self.run, self.who.config
            )
            self.timing.train = self.host["train_seconds"]
            return runner, self.host["interval"] + 1
        if self.run.init_from:
            runner = restore.init_from(self.loop, runner, self.run.init_from)
        return runner, 0

    def features(self, start: int) -> list[Feature]:
        """The run features, each told of every interval; a resumed run's pick up where the
        checkpoint left them."""
        run, run_dir, primary = self.run, self.run_dir, self.primary
        self.files = MetricFiles(run_dir if primary else None)
        features: list[Feature] = [self.files, FiniteCheck(self.who.name, run_dir)]
        writers = progress = None
        if primary:
            writers = Writers(run_dir, run, bool(start))
            progress = ProgressFeature(self.plan.total_steps, run.quiet, start * self.per_interval)
            features += [writers, progress]
        self._evaluator: list[Evaluator] = []  # Built (and compiled) when first needed.
        self.evaluation = PeriodicEvaluation(
            run_dir, run, self.evaluator, self.loop.agent_states, writers, progress
        )
        stop = StopRequest(run_dir, lambda: self.saver.checkpoints is not None)
        self.saver = CheckpointFeature(
            run_dir, run, self.plan.total_steps, stop, self.host_state, self.checkpoints
        )
        features += [self.evaluation, self.saver, stop]  # Ctrl-C stops once it is saved.
        self.features_list = features
        if run.resume:
            for f in features:
                if f.key:
                    f.load(self.host["features"][f.key])
            if primary:
                rundir.record_length(run_dir, self.saved_run)
            self.say(f"  resumed from the checkpoint after {start * self.per_interval:,} steps")
        return features

    def intervals(self, runner: Any, start: int, features: list[Feature]) -> Any:
        """The logging intervals from `start` to the end, each shown to every feature."""
        runs = len(run_seeds(self.run))
        # Matplotlib's import and first drawing run beside training, not after it.
        if self.run.plot and self.primary:
            self.warm = threading.Thread(target=_warm_plot, daemon=True)
            self.warm.start()
        try:
            for index in range(start, self.plan.num_intervals):
                t = time.perf_counter()
                runner, output = self.loop.step(runner)
                self.timing.train += time.perf_counter() - t
                steps = (index + 1) * self.per_interval
                row = interval_row(output, steps, steps * runs / self.timing.train)
                last = index == self.plan.num_intervals - 1
                interval = Interval(
                    index, steps, steps - self.per_interval, last, output, row, runner
                )
                for feature in features:
                    feature.on_interval(interval)
        except HostEnvError as e:
            raise HostEnvError(f"{e}. {self.what_is_kept()}") from e
        finally:
            for feature in reversed(features):
                feature.close()
        return runner

    def finish(self, runner: Any, features: list[Feature]) -> TrainResult:
        """Evaluates the final agents, saves their policy, writes the summary and the plot,
        and says how the run ended."""
        final = self.files.final_return()
        states = self.loop.agent_states(runner)  # Collective with runs over hosts.
        if not self.primary:  # Process 0 evaluates and writes the policy, summary and plot.
            print(
                f"process {jax.process_index()} of {jax.process_count()}: done; final return "
                f"{format_return(float(np.nanmean(final)))}, run dir {self.run_dir} "
                "(written by process 0)",
                flush=True,
            )
            result = {"agent": self.who.name, "run_dir": str(self.run_dir)}
            result["final_return"] = final.tolist()
            return TrainResult(result, jax.device_get(states), self.run_dir)
        eval_returns = self.evaluator()(states) if self.run.eval_episodes else np.zeros((0,))
        save_policy(self.run_dir, states)
        result = summary.make_summary(
            self.who.name,
            self.run,
            self.who.config,
            self.run_dir,
            self.plan,
            self.built.mesh,
            self.loop.kind,
            final,
            eval_returns,
            self.evaluation.rows,
            self.timing,
        )
        if self.sweep is not None:
            seeds = run_seeds(self.run)[: self.run.num_seeds]
            result["sweep"] = write_sweep(self.run_dir, self.sweep, seeds, final, eval_returns)
            result["sweep_configs"] = [
                dict(zip(self.sweep.names, p, strict=True)) for p in self.sweep.grid
            ]
        summary.write_summary(self.run_dir, result)
        self.draw()
        if self.sweep is not None and not self.run.quiet:
            summary.print_sweep(result["sweep"], self.sweep.names, self.run.num_seeds)
        print(summary.closing_line(result, self.run_dir, self.sweep), flush=True)
        return TrainResult(result, jax.device_get(states), self.run_dir)

    # Helpers of the steps -----------------------------------------------------------------
    def evaluator(self) -> Evaluator:
        if not self._evaluator:
            self._evaluator.append(Evaluator(self.loop, self.run))
        return self._evaluator[0]

    def host_state(self, interval: Interval) -> dict[str, Any]:
        """What a checkpoint keeps beside the runner: the position, time and features."""
        return {
            "interval": interval.index,
            "train_seconds": self.timing.train,
            "loop": self.loop.host_state(),
            "features": {f.key: f.state() for f in self.features_list if f.key},
        }

    def what_is_kept(self) -> str:
        if self.saver.saved():
            return (
                f"The last checkpoint in {self.run_dir / 'checkpoints'} is intact: fix the "
                f"environment and continue with --resume {self.run_dir}."
            )
        return f"No checkpoint had been saved; the metrics so far are in {self.run_dir}."

    def draw(self) -> None:
        if not self.run.plot:
            return
        try:
            if getattr(self, "warm", None) is not None:
                self.warm.join()
            plot([self.run_dir], self.run_dir / CURVE_FILE)
        except Exception as e:  # A plotting problem must not fail a finished run.
            print(f"warning: could not draw {self.run_dir / CURVE_FILE}: {e}", file=sys.stderr)


def _warm_plot() -> None:
    try:
        warm_up()
    except Exception:  # Only a head start; `plot` reports any real problem.
        pass
