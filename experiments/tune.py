"""`purerl tune AGENT` (and `python -m purerl.experiments.tune AGENT`): searches an agent's
float and integer options with Optuna, training each batch of trials as one vmapped sweep
program and pruning the bad ones from their intermediate returns.

    purerl tune ppo --env CartPole-v1 --search learning_rate=log:1e-4:1e-2 gamma=0.9:0.999 \\
        update_epochs=int:2:8 --trials 32 --batch 8 --num-seeds 2 --total-timesteps 100000

Optuna asks for `--batch` trials at a time; the batch trains as one program on the device
loop (`--sweep`'s machinery, the trials as its configurations, each with `--num-seeds`
seeds). Float options vary within a batch: they are traced values in the program. Integer
options size its arrays and loops (env counts, rollout lengths, epochs, minibatches), so a
batch's trials share one value of each, drawn for its first trial: they vary between batches.
After every logging interval each trial's mean return over its seeds goes to Optuna's pruner
(`--pruner`). A trial ends complete (its value: its mean final return), pruned, or failed
(a non-finite loss), and is told so at once. Where only float options are searched, its
lanes then train the next trial asked, from a fresh start, in the same compiled program: the
whole tune is one batch of `--batch` trials at a time, and a pruned trial's compute goes to
a new trial. With integer options, the next trials need another program, so a pruned
trial's lanes idle until its batch ends, and a batch stops once none of its trials is left.

The study lives in `RUN_DIR/study.db` (SQLite; `optuna-dashboard sqlite:///RUN_DIR/study.db`),
each batch's config, trial numbers and timing in `RUN_DIR/batch{K}/`. `--resume RUN_DIR`
goes on after any stop, kill -9 included: finished trials are kept, the trials in flight
are marked failed and asked again with the same values. The end prints the best
configuration and writes `RUN_DIR/best.yaml`, which `purerl AGENT --config
RUN_DIR/best.yaml` trains.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import typing
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from purerl.core import EpisodeStats
from purerl.experiments.engine.features import MetricFiles, seed_returns

TUNE_FILE = "tune.json"  # The tune's own arguments, for --resume.
STUDY_FILE = "study.db"
BEST_FILE = "best.yaml"
RETRY_OF = "retry_of"  # User attribute of a trial asked again: the number it repeats.
STARTUP_TRIALS = 5  # Finished trials the median and percentile pruners wait for.


class Range(NamedTuple):
    """One searched option: its bounds, whether in log space, whether an integer option
    (structural: shared by a batch's trials, varied between batches)."""

    name: str
    low: float
    high: float
    log: bool
    integer: bool

    def entry(self) -> str:
        """The `--search` entry that reads back as this range (saved for --resume)."""
        kinds = ["int"] * self.integer + ["log"] * self.log
        bounds = (int(self.low), int(self.high)) if self.integer else (self.low, self.high)
        return f"{self.name}={':'.join([*kinds, *map(repr, bounds)])}"

    def distribution(self) -> Any:
        import optuna

        if self.integer:
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log)
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)


def searchable(config: Any) -> tuple[list[str], list[str]]:
    """The agent's float options and its integer options (a bool is not an integer here)."""
    hints = typing.get_type_hints(type(config))
    fields = dataclasses.fields(config)
    return [f.name for f in fields if hints[f.name] is float], [
        f.name for f in fields if hints[f.name] is int
    ]


def parse_search(entries: list[str], config: Any) -> list[Range]:
    """`["learning_rate=log:1e-4:1e-2", "gamma=0.9:0.999", "update_epochs=int:2:8"]` as
    ranges of `config`'s options, with a clear error for anything else. An integer option is
    searched over integers with or without `int:`."""
    floats, ints = searchable(config)
    ranges: list[Range] = []
    for entry in entries:
        name, _, spec = str(entry).partition("=")
        name = name.strip().replace("-", "_")
        *kinds, low_text, high_text = [""] * 2 + spec.strip().split(":")
        kinds = [k for k in kinds if k]
        try:
            if set(kinds) - {"int", "log"} or len(set(kinds)) != len(kinds):
                raise ValueError
            low, high = float(low_text), float(high_text)
        except ValueError:
            raise ValueError(
                f"--search {entry!r}: write NAME=LOW:HIGH (uniform), NAME=log:LOW:HIGH "
                "(log-uniform), NAME=int:LOW:HIGH or NAME=int:log:LOW:HIGH (integers), e.g. "
                "learning_rate=log:1e-4:1e-2 gamma=0.9:0.999 update_epochs=int:2:8."
            ) from None
        if name not in floats + ints:
            raise ValueError(_not_searchable(name, config, floats, ints))
        integer = name in ints
        if "int" in kinds and not integer:
            raise ValueError(f"--search {entry!r}: {name} is a float option; leave out int:.")
        if integer and not (low.is_integer() and high.is_integer()):
            raise ValueError(f"--search {entry!r}: {name} is an integer option; give integers.")
        if any(r.name == name for r in ranges):
            raise ValueError(f"--search {name} is given twice.")
        log = "log" in kinds
        if not low < high or (log and low <= 0):
            raise ValueError(
                f"--search {entry!r}: needs LOW < HIGH{' and LOW > 0 in log space' if log else ''}."
            )
        for value in (low, high):  # The agent config's own checks, on the bounds.
            dataclasses.replace(config, **{name: int(value) if integer else value})
        ranges.append(Range(name, low, high, log, integer))
    if not ranges:
        raise ValueError("--search needs at least one NAME=LOW:HIGH.")
    return ranges


def _not_searchable(name: str, config: Any, floats: list[str], ints: list[str]) -> str:
    cls = type(config).__name__
    if not hasattr(config, name):
        what = f"not an option of {cls}"
    else:
        kind = typing.get_type_hints(type(config))[name]
        what = (
            f"a {getattr(kind, '__name__', kind)} option of {cls}: purerl tune searches numbers "
            "(tuples such as network sizes, strings and flags are structural choices without a "
            "range: give them as flags and compare them as separate tunes)"
        )
    return (
        f"--search {name}: {what}. Float options (varied within a batch): {', '.join(floats)}. "
        f"Integer options (varied between batches): {', '.join(ints) or 'none'}."
    )


def read_search_file(path: str) -> list[str]:
    """The `--search` entries of a YAML file mapping each option to its range, written as on
    the command line (`learning_rate: "log:1e-5:1e-2"`) or as a mapping (`update_epochs:
    {low: 2, high: 8, log: false}`)."""
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"--search-file {path}: cannot read it ({e}).") from None
    if not isinstance(values, dict) or not values:
        raise ValueError(
            f"--search-file {path}: write one option per line, e.g. learning_rate: "
            '"log:1e-5:1e-2", or update_epochs: {low: 2, high: 8}.'
        )
    entries = []
    for name, spec in values.items():
        if isinstance(spec, dict) and {"low", "high"} <= set(spec) <= {"low", "high", "log"}:
            spec = f"{'log:' if spec.get('log') else ''}{spec['low']}:{spec['high']}"
        elif not isinstance(spec, str):  # YAML 1.1 reads an unquoted 2:8 as the number 128.
            raise ValueError(
                f"--search-file {path}: {name}: {spec!r} is not a range; quote it "
                f'({name}: "LOW:HIGH") or write {{low: LOW, high: HIGH}}.'
            )
        entries.append(f"{name}={spec}")
    return entries


def make_pruner(spec: str, warmup: int) -> Any:
    """Optuna's pruner for `--pruner`: median (prunes a trial whose best intermediate
    return so far is below the median of the finished trials' at the same interval), none,
    percentile:P, or threshold:LOW (below LOW). None prunes before interval `warmup`."""
    import optuna

    kind, _, value = spec.partition(":")
    try:
        if kind == "median" and not value:
            return optuna.pruners.MedianPruner(STARTUP_TRIALS, n_warmup_steps=warmup)
        if kind == "none" and not value:
            return optuna.pruners.NopPruner()
        if kind == "percentile":
            return optuna.pruners.PercentilePruner(
                float(value), STARTUP_TRIALS, n_warmup_steps=warmup
            )
        if kind == "threshold":
            return optuna.pruners.ThresholdPruner(lower=float(value), n_warmup_steps=warmup)
    except ValueError:
        pass
    raise ValueError(
        f"--pruner {spec!r}: choose median, none, percentile:P (0-100, e.g. percentile:25) or "
        "threshold:LOW (prune a trial whose return is below LOW, e.g. threshold:50)."
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="purerl tune",
        usage="purerl tune AGENT --search NAME=[int:][log:]LOW:HIGH ... [--search-file FILE] "
        "[--trials N] [--batch N] [--pruner P] [--run-dir DIR] [AGENT FLAGS]\n"
        "       purerl tune --resume DIR [--trials N] [--batch N]",
        allow_abbrev=False,
        description="Search an agent's float and integer options with Optuna, training each "
        "batch of trials as one vmapped program and pruning bad trials from their "
        "intermediate returns. Other flags (--env, --num-seeds, --total-timesteps, "
        "--num-logs, ...) are the agent's, as `purerl AGENT --help` lists them.",
    )
    parser.add_argument(
        "--search",
        nargs="+",
        default=[],
        metavar="NAME=[int:][log:]LOW:HIGH",
        help="the options to search and their ranges (integer options: between batches)",
    )
    parser.add_argument(
        "--search-file", default=None, help="a YAML file of ranges (NAME: [int:][log:]LOW:HIGH)"
    )
    parser.add_argument("--trials", type=int, default=None, help="trials in all (default 16)")
    parser.add_argument(
        "--batch", type=int, default=None, help="trials trained as one program (default 4)"
    )
    parser.add_argument(
        "--pruner",
        default=None,
        help="median (default), none, percentile:P or threshold:LOW, on each trial's mean "
        "return over its seeds after every logging interval",
    )
    parser.add_argument(
        "--prune-warmup",
        type=int,
        default=None,
        help="logging intervals before any pruning (default: a quarter of --num-logs)",
    )
    parser.add_argument("--run-dir", default=None, help="the tune's directory")
    parser.add_argument("--resume", default=None, help="continue the tune in this directory")
    return parser


def tune(argv: list[str]) -> dict[str, Any]:
    """Runs `purerl tune` with `argv`; returns the best trial (its options and value)."""
    optuna = _optuna()
    saved, run_dir = _arguments(*_parser().parse_known_args(argv))
    name = saved["agent"]
    run, config, entry = _configs(name, saved["flags"])
    ranges = parse_search(saved["search"], config)
    if run.normalize_rewards and "gamma" in [r.name for r in ranges]:
        raise ValueError(
            "--normalize-rewards scales rewards by returns discounted with one gamma, so "
            "gamma cannot vary within a batch; search gamma without it."
        )
    warmup = saved["prune_warmup"]
    pruner = make_pruner(saved["pruner"], run.num_logs // 4 if warmup is None else warmup)
    if run_dir is None:
        from purerl.experiments.engine.config import default_run_dir

        run_dir = default_run_dir(f"tune_{name}", run.env)
    saved["search"] = [r.entry() for r in ranges]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / TUNE_FILE).write_text(json.dumps(saved, indent=2))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=_storage(run_dir / STUDY_FILE),
        study_name=f"{name}-{run.env}",
        direction="maximize",
        pruner=pruner,
        load_if_exists=True,
    )
    # Seeded by the trials so far, so a resumed tune does not draw the same points again.
    study.sampler = optuna.samplers.TPESampler(
        seed=run.seed + len(study.trials), constant_liar=True
    )
    tuner = _Tuner(study, entry, run, config, ranges, run_dir)
    tuner.recover()
    while (left := saved["trials"] - tuner.finished()) > 0:
        tuner.train_batch(min(saved["batch"], left), left)
    return _finish(study, run, config, run_dir, name)


def _storage(path: Path) -> Any:
    """The study's SQLite database, in write-ahead-log mode without a disk sync per commit:
    a tune commits each trial's report after every interval, and syncing each to disk cost
    more than a second per hundred on a busy machine. A killed process loses nothing
    committed this way (the operating system writes it); a power cut may lose the last
    reports, as it may lose the runs themselves."""
    import sqlite3

    import optuna

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(path, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    return optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"creator": connect})


def _arguments(args: argparse.Namespace, flags: list[str]) -> tuple[dict[str, Any], Path | None]:
    """The tune's own arguments (`tune.json`: agent, its flags, search entries, trials, batch,
    pruner) and its directory (None where none is given): a new tune's from the command
    line, a resumed one's as saved, where --trials and --batch may change."""
    if args.resume:
        run_dir = Path(args.resume)
        try:
            saved = json.loads((run_dir / TUNE_FILE).read_text())
        except OSError:
            raise ValueError(
                f"--resume {run_dir}: no tune there (it has no {TUNE_FILE})."
            ) from None
        given = args.search or args.search_file or args.pruner or args.prune_warmup is not None
        if flags not in ([], [saved["agent"]]) or given or args.run_dir:
            raise ValueError(
                f"--resume {run_dir} continues the tune of {saved['agent']} with the options it "
                "was started with; give only --trials or --batch with it."
            )
        saved.setdefault("pruner", "median")  # A tune started before pruning.
        saved.setdefault("prune_warmup", None)
    else:
        if not flags or flags[0].startswith("-"):
            raise ValueError("purerl tune needs an agent first: purerl tune ppo --search ...")
        search = list(args.search)
        if args.search_file:
            search += read_search_file(args.search_file)
        if not search:
            raise ValueError(
                "purerl tune needs --search NAME=[int:][log:]LOW:HIGH ... (or --search-file)"
            )
        run_dir = Path(args.run_dir) if args.run_dir else None
        if run_dir is not None and (run_dir / TUNE_FILE).exists():
            raise ValueError(
                f"{run_dir} already holds a tune: continue it with purerl tune --resume "
                f"{run_dir}, or choose another --run-dir."
            )
        saved = {"agent": flags[0], "flags": flags[1:], "search": search, "trials": 16}
        saved |= {"batch": 4, "pruner": args.pruner or "median"}
        saved["prune_warmup"] = args.prune_warmup
    saved["trials"] = args.trials or saved["trials"]
    saved["batch"] = args.batch or saved["batch"]
    if saved["trials"] < 1 or saved["batch"] < 1:
        raise ValueError("--trials and --batch must be at least 1.")
    return saved, run_dir


def _configs(name: str, flags: list[str]) -> tuple[Any, Any, Any]:
    """The run and agent configs of the agent flags, with the agent's preset as `purerl
    AGENT` would use it, and the registry entry."""
    from purerl.agents import registry
    from purerl.experiments.cli import experiment_class, parse
    from purerl.experiments.presets import given_options, with_preset

    entry = registry.get(name)
    if any(f == "--sweep" or f.startswith("--sweep=") for f in flags):
        raise ValueError("purerl tune makes each batch's sweep itself; leave out --sweep.")
    args = parse(experiment_class(name), flags, prog=f"purerl tune {name}")
    if args.run.resume or args.run.run_dir:
        raise ValueError("give --run-dir and --resume of the tune itself, before the agent flags")
    if args.run.checkpoint_every is not None:
        raise ValueError(
            "purerl tune does not checkpoint its batches (a stopped tune trains the trials it "
            "was training again); leave out --checkpoint-every."
        )
    run, config = with_preset(args.agent, args.run, given_options(flags), args.run.quiet)
    from purerl import envs

    if envs.resolve(run.env)[0] == "host":
        raise ValueError(
            f"{run.env} is a host (Python) environment; purerl tune trains each batch of "
            "trials as one program on the device loop, which needs a JAX environment."
        )
    return run, config, entry


@dataclasses.dataclass
class _Slot:
    """A trial training in a batch: its `--num-seeds` vmapped runs (lanes) and the episodes
    of each logging interval since it took them."""

    trial: Any
    episodes: list[EpisodeStats] = dataclasses.field(default_factory=list)


class _Tuner:
    """A tune's study and the batches it trains."""

    def __init__(
        self, study: Any, entry: Any, run: Any, config: Any, ranges: list[Range], run_dir: Path
    ):
        self.study, self.entry, self.run, self.config = study, entry, run, config
        self.ranges, self.run_dir = ranges, run_dir
        self.distributions = {r.name: r.distribution() for r in ranges}
        self.structural = [r.name for r in ranges if r.integer]
        self.floats = tuple(r.name for r in ranges if not r.integer)

    def finished(self) -> int:
        """Trials that count towards `--trials`: complete, pruned, or failed and not asked
        again."""
        import optuna

        states = optuna.trial.TrialState
        trials = self.study.get_trials(deepcopy=False)
        retried = {t.user_attrs.get(RETRY_OF) for t in trials}
        done = (states.COMPLETE, states.PRUNED, states.FAIL)
        return sum(t.state in done and t.number not in retried for t in trials)

    def recover(self) -> None:
        """After a stop: fails the trials still running (killed in flight) and asks them
        again with the same values. Every trial that ended was told so as it ended."""
        for trial in self._running():
            print(f"trial {trial.number} was in flight when the tune stopped: asked again")
        self._again(self._running())

    def ask_batch(self, size: int) -> list[Any]:
        """Up to `size` trials that share the integer options of the first (trials queued
        to be asked again come first)."""
        import optuna

        trials = [self.study.ask(self.distributions)]
        if not self.floats:  # Nothing varies within a batch: one trial per batch.
            return trials
        fixed = {n: trials[0].params[n] for n in self.structural}
        while len(trials) < size:
            waiting = self.study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.WAITING,)
            )
            if waiting:
                queued = waiting[0].system_attrs.get("fixed_params", {})
                if any(queued.get(n, fixed[n]) != fixed[n] for n in self.structural):
                    break  # The next queued trial has other integer options: its own batch.
            elif fixed:
                self.study.enqueue_trial(fixed)  # The sampler draws the floats.
            trials.append(self.study.ask(self.distributions))
        return trials

    def checked(self, trials: list[Any], config: Any) -> list[Any]:
        """`trials` that `config`'s own checks accept; the others failed with its message
        (an integer combination it refuses)."""
        import optuna

        accepted = []
        for trial in trials:
            try:
                dataclasses.replace(config, **trial.params)
                accepted.append(trial)
            except ValueError as e:
                trial.set_user_attr("error", str(e))
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                print(f"trial {trial.number}: {e} (failed)", flush=True)
        return accepted

    def train_batch(self, size: int, left: int) -> None:
        """Asks a batch of trials and trains it as one sweep program in `RUN_DIR/batch{K}`,
        telling the study each trial's end as it comes: complete with its mean final
        return, pruned, or failed.

        Where no integer option is searched, a trial that ends leaves its lanes to the next
        trial asked (fresh runs, its own float values, no compile), until `left` trials have
        started: the batch is a pool of `size` trials at a time, and a pruned trial's
        compute goes to a new one. Otherwise the next trials need other integer options,
        another program: a pruned trial's lanes idle until the batch ends, and the batch
        stops once none of its trials is left."""
        from purerl.experiments.engine import rundir, trainee
        from purerl.experiments.engine.build import build_loop
        from purerl.experiments.engine.sweep import Sweep, with_values

        asked = self.ask_batch(size)
        trials = self.checked(asked, self.config)
        if not trials:
            return
        structure = {n: trials[0].params[n] for n in self.structural}
        config = dataclasses.replace(self.config, **structure)
        to_ask = 0 if self.structural or not self.floats else left - len(asked)
        sweep, run = None, dataclasses.replace(self.run, checkpoint_every=0)
        if self.floats:
            sweep = Sweep.from_points(self.floats, [self._point(t) for t in trials], config)
            run = dataclasses.replace(run, sweep=sweep.entries())
        batch_dir = self.run_dir / f"batch{len(list(self.run_dir.glob('batch*')))}"
        batch_dir.mkdir(parents=True)
        run = dataclasses.replace(run, run_dir=str(batch_dir))
        who = trainee.registered(self.entry, config)
        rundir.write_config(batch_dir, run, who.record, config)
        started = [t.number for t in trials]
        (batch_dir / "trials.json").write_text(json.dumps(started))
        shared = "".join(f", {n}={v}" for n, v in structure.items())
        print(f"tune {batch_dir.name}: trials {', '.join(map(str, started))}{shared}", flush=True)

        entry, swept = self.entry, None
        if sweep is not None:
            names = sweep.names
            swept = (
                sweep,
                lambda context: lambda row: entry.recipe(with_values(config, names, row), context),
            )
        slots: list[_Slot | None] = [_Slot(t) for t in trials]
        try:
            built = build_loop(run, who.build, swept)
        except ValueError as e:
            if not structure:
                raise
            self._refused([s.trial for s in slots if s], batch_dir, e)
            return
        loop, seeds, intervals = built.loop, run.num_seeds, built.plan.num_intervals
        values = sweep.values(seeds) if sweep is not None else np.zeros((0, 0))
        timing = {"compile_seconds": time.perf_counter(), "train_seconds": 0.0, "intervals": 0}
        try:
            runner = self._compile(loop, batch_dir)
            timing["compile_seconds"] = time.perf_counter() - timing["compile_seconds"]
            while any(slots):
                t = time.perf_counter()
                runner, output = loop.step(runner)
                timing["train_seconds"] += time.perf_counter() - t
                timing["intervals"] += 1
                lanes = [slice(c * seeds, (c + 1) * seeds) for c in range(len(slots))]
                ended = [
                    c
                    for c, slot in enumerate(slots)
                    if slot and self._interval(slot, output, lanes[c], intervals)
                ]
                refills = np.zeros(len(slots) * seeds, bool)
                for c in ended:
                    old, slots[c] = slots[c], None
                    while to_ask and slots[c] is None:  # A trial the config refuses fails.
                        to_ask -= 1
                        new = self.checked([self.study.ask(self.distributions)], config)
                        if new:
                            slots[c] = _Slot(new[0])
                            values[lanes[c]] = self._point(new[0])
                            refills[lanes[c]] = True
                            started.append(new[0].number)
                            print(
                                f"  trial {new[0].number} takes trial {old.trial.number}'s lanes",
                                flush=True,
                            )
                if refills.any():
                    runner = loop.restart_runs(runner, refills, values)
                    (batch_dir / "trials.json").write_text(json.dumps(started))
            (batch_dir / "timing.json").write_text(json.dumps(timing))
        except ValueError as e:
            if not structure:
                raise
            self._refused([s.trial for s in slots if s], batch_dir, e)
        except KeyboardInterrupt:
            self._again([s.trial for s in slots if s])
            raise KeyboardInterrupt(
                f"stopped in {batch_dir.name}; its unfinished trials are asked again when you "
                f"continue with purerl tune --resume {self.run_dir}"
            ) from None
        finally:
            loop.close()

    def _point(self, trial: Any) -> tuple[float, ...]:
        return tuple(trial.params[n] for n in self.floats)

    def _compile(self, loop: Any, batch_dir: Path) -> Any:
        """The batch's initial runner, its programs compiled."""
        import jax

        t0 = time.perf_counter()
        try:
            runner = loop.init()
        except (jax.errors.TracerBoolConversionError, jax.errors.ConcretizationTypeError) as e:
            raise ValueError(
                f"purerl tune: {self.entry.name} decides its program's control flow or shapes "
                f"by one of {', '.join(self.floats)}, so they cannot vary within a batch; give "
                "such an option as a flag, not in --search."
            ) from e
        if not self.run.quiet:
            print(f"  {batch_dir.name} compiled in {time.perf_counter() - t0:.1f}s", flush=True)
        return runner

    def _interval(self, slot: _Slot, output: Any, lanes: slice, intervals: int) -> bool:
        """Tells `slot`'s trial of one interval of its runs (`lanes`): its mean return over
        its seeds to the pruner, and its end (failed where its loss diverged, complete
        after its last interval, or pruned). Whether it ended."""
        import optuna

        trial = slot.trial
        slot.episodes.append(EpisodeStats(*(x[:, lanes] for x in output.episodes)))
        step = len(slot.episodes)  # Steps count intervals, not env steps.
        if not all(np.isfinite(v[:, lanes]).all() for v in output.metrics.values()):
            trial.set_user_attr("diverged_in_interval", step)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            print(f"  trial {trial.number}: diverged (non-finite loss), failed", flush=True)
            return True
        returns = seed_returns(slot.episodes[-1])
        if not np.isnan(returns).all():
            trial.report(float(np.nanmean(returns)), step)
        if step == intervals:
            value = _final_return(slot.episodes)
            _tell(self.study, trial.number, value)
            print(f"  trial {trial.number}: mean final return {value:.1f}", flush=True)
            return True
        if np.isnan(returns).all() or not trial.should_prune():
            return False
        self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        print(
            f"  trial {trial.number}: pruned after interval {step} (return "
            f"{np.nanmean(returns):.1f})",
            flush=True,
        )
        return True

    def _refused(self, trials: list[Any], batch_dir: Path, error: ValueError) -> None:
        """Fails `trials`, whose integer options the agent refused (e.g. its env count on
        these devices)."""
        import optuna

        for trial in trials:
            trial.set_user_attr("error", str(error))
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        print(f"{batch_dir.name} failed: {error}", flush=True)

    def _again(self, trials: list[Any]) -> None:
        """Fails `trials` (stopped before their end) and queues them to be asked again."""
        import optuna

        for trial in trials:
            self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            self.study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})

    def _running(self) -> list[Any]:
        import optuna

        return self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))


def _final_return(episodes: list[EpisodeStats]) -> float:
    """A trial's mean final return over its seeds: each seed's as a run's summary has it
    (the episodes of its last 10% of updates); NaN where no episode ended."""
    files = MetricFiles(None)
    files.episodes = episodes
    final = files.final_return()
    return float(np.nanmean(final)) if np.isfinite(final).any() else float("nan")


def _tell(study: Any, number: int, value: float) -> None:
    import optuna

    if np.isfinite(value):
        study.tell(number, value)
    else:  # No episode ended: no value to compare.
        study.tell(number, state=optuna.trial.TrialState.FAIL)


def _finish(study: Any, run: Any, config: Any, run_dir: Path, name: str) -> dict[str, Any]:
    """Prints the best configuration and writes it as `RUN_DIR/best.yaml`."""
    import optuna
    import yaml

    try:
        best = study.best_trial
    except ValueError:
        raise ValueError(f"no trial of {run_dir} finished with a return to compare.") from None
    tuned = dataclasses.replace(config, **best.params)
    settings: dict[str, Any] = {"env": run.env}
    if run.env_params:
        settings["env_params"] = list(run.env_params)
    for f in dataclasses.fields(tuned):
        settings[f.name] = _plain(getattr(tuned, f.name))
    states = optuna.trial.TrialState
    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in states}
    tally = ", ".join(f"{n} {k}" for k, n in counts.items() if n and k != "waiting")
    header = (
        f"# purerl tune {name}: the best of {len(study.trials)} trials ({tally}): trial "
        f"{best.number}, mean final return {best.value:.2f} after {run.total_timesteps:,} env "
        f"steps.\n# Train it: purerl {name} --config {run_dir / BEST_FILE}\n"
    )
    (run_dir / BEST_FILE).write_text(header + yaml.safe_dump(settings, sort_keys=False))
    options = ", ".join(f"{k}={v:.4g}" for k, v in best.params.items())
    print(
        f"best of {len(study.trials)} trials ({tally}): trial {best.number}, {options}: mean "
        f"final return {best.value:.2f}\n  written to {run_dir / BEST_FILE} "
        f"(train it: purerl {name} --config {run_dir / BEST_FILE})",
        flush=True,
    )
    return {"number": best.number, "params": dict(best.params), "value": best.value}


def _plain(value: Any) -> Any:
    """A config value as plain YAML (tuples as lists)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ValueError(
            "purerl tune needs Optuna, an optional extra: pip install -e '.[tune]' "
            "(or pip install 'optuna>=4')."
        ) from None
    return optuna


def main(argv: list[str] | None = None) -> None:
    """The `purerl tune` command."""
    from purerl.experiments.cli import cli_main

    given = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in given):
        _parser().print_help()
        return
    cli_main(lambda: tune(given))


if __name__ == "__main__":
    main()
