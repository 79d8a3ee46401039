"""`purerl tune AGENT` (and `python -m purerl.experiments.tune AGENT`): searches an agent's
float options with Optuna, training each batch of trials as one vmapped sweep program.

    purerl tune ppo --env CartPole-v1 --search learning_rate=log:1e-4:1e-2 gamma=0.9:0.999 \\
        --trials 16 --batch 4 --num-seeds 2 --total-timesteps 100000

Optuna asks for `--batch` trials at a time; the batch trains as one program on the device
loop (`--sweep`'s machinery, the trials as its configurations, each with `--num-seeds`
seeds), and each trial's value is its mean final return over its seeds. The study lives in
`RUN_DIR/study.db` (SQLite: `optuna-dashboard sqlite:///RUN_DIR/study.db` opens it), each
batch's runs in `RUN_DIR/batch{K}/` (ordinary run directories); `--resume RUN_DIR` goes on
after a stop, keeping the finished batches. The end prints the best configuration and writes
`RUN_DIR/best.yaml`, which `purerl AGENT --config RUN_DIR/best.yaml` trains.

Every trial of a batch trains to the end: pruning inside a batch is not done.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

TUNE_FILE = "tune.json"  # The tune's own arguments, for --resume.
STUDY_FILE = "study.db"
BEST_FILE = "best.yaml"


class Range(NamedTuple):
    """One `--search` entry: the option, its bounds and whether it is searched in log space."""

    name: str
    low: float
    high: float
    log: bool


def parse_search(entries: list[str], config: Any) -> list[Range]:
    """`["learning_rate=log:1e-4:1e-2", "gamma=0.9:0.999"]` as ranges of `config`'s float
    options, with a clear error for anything else."""
    from purerl.experiments.engine.sweep import sweepable

    allowed = sweepable(config)
    ranges: list[Range] = []
    for entry in entries:
        name, sep, spec = str(entry).partition("=")
        name = name.strip().replace("-", "_")
        parts = spec.split(":")
        log = parts[0] == "log"
        parts = parts[1:] if log else parts
        try:
            low, high = (float(p) for p in parts)
        except ValueError:
            raise ValueError(
                f"--search {entry!r}: write NAME=LOW:HIGH (uniform) or NAME=log:LOW:HIGH "
                "(log-uniform), e.g. learning_rate=log:1e-4:1e-2 gamma=0.9:0.999."
            ) from None
        if name not in allowed:
            what = "not an option of" if not hasattr(config, name) else "not a float option of"
            raise ValueError(
                f"--search {name}: {what} {type(config).__name__}; a batch of trials trains as "
                f"one program, so only float options can be searched: {', '.join(allowed)}."
            )
        if any(r.name == name for r in ranges):
            raise ValueError(f"--search {name} is given twice.")
        if not low < high or (log and low <= 0):
            raise ValueError(
                f"--search {entry!r}: needs LOW < HIGH{' and LOW > 0 in log space' if log else ''}."
            )
        for value in (low, high):  # The agent config's own checks, on the bounds.
            dataclasses.replace(config, **{name: value})
        ranges.append(Range(name, low, high, log))
    if not ranges:
        raise ValueError("--search needs at least one NAME=LOW:HIGH.")
    return ranges


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="purerl tune",
        usage="purerl tune AGENT --search NAME=[log:]LOW:HIGH ... [--trials N] [--batch N] "
        "[--run-dir DIR] [AGENT FLAGS]\n       purerl tune --resume DIR [--trials N] [--batch N]",
        allow_abbrev=False,
        description="Search an agent's float options with Optuna, training each batch of "
        "trials as one vmapped program. Other flags (--env, --num-seeds, --total-timesteps, "
        "--num-envs, ...) are the agent's, as `purerl AGENT --help` lists them.",
    )
    parser.add_argument(
        "--search",
        nargs="+",
        default=None,
        metavar="NAME=[log:]LOW:HIGH",
        help="the float options to search and their ranges",
    )
    parser.add_argument("--trials", type=int, default=None, help="trials in all (default 16)")
    parser.add_argument(
        "--batch", type=int, default=None, help="trials trained as one program (default 4)"
    )
    parser.add_argument("--run-dir", default=None, help="the tune's directory")
    parser.add_argument("--resume", default=None, help="continue the tune in this directory")
    return parser


def tune(argv: list[str]) -> dict[str, Any]:
    """Runs `purerl tune` with `argv`; returns the best trial (its options and value)."""
    optuna = _optuna()
    args, agent_flags = _parser().parse_known_args(argv)
    if args.resume:  # The tune's own arguments; --trials (and --batch) may change.
        run_dir = Path(args.resume)
        try:
            saved = json.loads((run_dir / TUNE_FILE).read_text())
        except OSError:
            raise ValueError(
                f"--resume {run_dir}: no tune there (it has no {TUNE_FILE})."
            ) from None
        if agent_flags not in ([], [saved["agent"]]) or args.search:
            raise ValueError(
                f"--resume {run_dir} continues the tune of {saved['agent']} with the options it "
                "was started with; give only --trials or --batch with it."
            )
        name, search, agent_flags = saved["agent"], saved["search"], saved["flags"]
        trials = args.trials or saved["trials"]
        batch = args.batch or saved["batch"]
    else:
        if not agent_flags or agent_flags[0].startswith("-"):
            raise ValueError("purerl tune needs an agent first: purerl tune ppo --search ...")
        name, agent_flags = agent_flags[0], agent_flags[1:]
        if not args.search:
            raise ValueError("purerl tune needs --search NAME=[log:]LOW:HIGH ...")
        search, trials, batch = args.search, args.trials or 16, args.batch or 4
        run_dir = None
    if trials < 1 or batch < 1:
        raise ValueError("--trials and --batch must be at least 1.")
    run, config, entry = _configs(name, agent_flags)
    ranges = parse_search(search, config)
    if run_dir is None:
        from purerl.experiments.engine.config import default_run_dir

        run_dir = Path(args.run_dir or str(default_run_dir(f"tune_{name}", run.env)))
        if (run_dir / TUNE_FILE).exists():
            raise ValueError(
                f"{run_dir} already holds a tune: continue it with purerl tune --resume "
                f"{run_dir}, or choose another --run-dir."
            )
        run_dir.mkdir(parents=True, exist_ok=True)
    saved = {"agent": name, "search": search, "flags": agent_flags}
    saved |= {"trials": trials, "batch": batch}
    (run_dir / TUNE_FILE).write_text(json.dumps(saved, indent=2))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=f"sqlite:///{run_dir / STUDY_FILE}",
        study_name=f"{name}-{run.env}",
        direction="maximize",
        load_if_exists=True,
    )
    distributions = {
        r.name: optuna.distributions.FloatDistribution(r.low, r.high, log=r.log) for r in ranges
    }
    _tell_finished_batches(study, run_dir)
    while True:
        states = optuna.trial.TrialState
        done = len(study.get_trials(deepcopy=False, states=(states.COMPLETE, states.FAIL)))
        if done >= trials:
            break
        # Trials asked before a stop and never told train again first, with their values.
        pending = study.get_trials(deepcopy=False, states=(states.RUNNING,))
        numbers = [t.number for t in pending][: min(batch, trials - done)]
        points = [tuple(t.params[r.name] for r in ranges) for t in pending[: len(numbers)]]
        while len(numbers) < min(batch, trials - done):
            trial = study.ask(distributions)
            numbers.append(trial.number)
            points.append(tuple(trial.params[r.name] for r in ranges))
        index = len(list(run_dir.glob("batch*/summary.json")))
        values = _train_batch(entry, run, config, ranges, points, numbers, run_dir, index)
        for number, value in zip(numbers, values, strict=True):
            _tell(study, number, value)
    return _finish(study, run, config, ranges, run_dir, name)


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
    run, config = with_preset(args.agent, args.run, given_options(flags), args.run.quiet)
    from purerl import envs

    if envs.resolve(run.env)[0] == "host":
        raise ValueError(
            f"{run.env} is a host (Python) environment; purerl tune trains each batch of "
            "trials as one program on the device loop, which needs a JAX environment."
        )
    return run, config, entry


def _train_batch(
    entry: Any,
    run: Any,
    config: Any,
    ranges: list[Range],
    points: list[tuple[float, ...]],
    numbers: list[int],
    run_dir: Path,
    index: int,
) -> list[float]:
    """Trains one batch of trials as one sweep program in `RUN_DIR/batch{index}`; returns
    each trial's mean final return over its seeds."""
    from purerl.experiments.engine.sweep import Sweep
    from purerl.experiments.engine.trainer import train

    names = tuple(r.name for r in ranges)
    sweep = Sweep.from_points(names, points, config)
    batch_dir = run_dir / f"batch{index}"
    if batch_dir.exists():  # A batch stopped before its end trains again from the start.
        shutil.rmtree(batch_dir)
    batch_dir.mkdir(parents=True)
    (batch_dir / "trials.json").write_text(json.dumps(numbers))
    print(f"tune batch {index}: trials {', '.join(map(str, numbers))}", flush=True)
    result = train(
        entry, dataclasses.replace(run, run_dir=str(batch_dir), sweep=sweep.entries()), config
    )
    return _trial_values(result.summary, len(points))


def _trial_values(summary: dict[str, Any], trials: int) -> list[float]:
    """Each trial's mean final return over its seeds (the runs are configuration-major)."""
    final = np.asarray(summary["final_return"], np.float64).reshape(trials, -1)
    with np.errstate(all="ignore"):
        return [float(np.nanmean(row)) if np.isfinite(row).any() else float("nan") for row in final]


def _tell(study: Any, number: int, value: float) -> None:
    import optuna

    if np.isfinite(value):
        study.tell(number, value)
    else:  # No episode ended: no value to compare.
        study.tell(number, state=optuna.trial.TrialState.FAIL)


def _tell_finished_batches(study: Any, run_dir: Path) -> None:
    """Tells the study the values of batches that finished but were not told (a stop between
    the end of a batch and the study's write)."""
    import optuna

    running = {t.number for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))}
    for batch_dir in sorted(run_dir.glob("batch*")):
        path = batch_dir / "summary.json"
        if not path.exists() or not (batch_dir / "trials.json").exists():
            continue
        numbers = json.loads((batch_dir / "trials.json").read_text())
        if not running.intersection(numbers):
            continue
        values = _trial_values(json.loads(path.read_text()), len(numbers))
        for number, value in zip(numbers, values, strict=True):
            if number in running:
                _tell(study, number, value)


def _finish(
    study: Any, run: Any, config: Any, ranges: list[Range], run_dir: Path, name: str
) -> dict[str, Any]:
    """Prints the best configuration and writes it as `RUN_DIR/best.yaml`."""
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
    header = (
        f"# purerl tune {name}: the best of {len(study.trials)} trials (trial {best.number}, "
        f"mean final return {best.value:.2f} after {run.total_timesteps:,} env steps).\n"
        f"# Train it: purerl {name} --config {run_dir / BEST_FILE}\n"
    )
    (run_dir / BEST_FILE).write_text(header + yaml.safe_dump(settings, sort_keys=False))
    options = ", ".join(f"{k}={v:.4g}" for k, v in best.params.items())
    print(
        f"best of {len(study.trials)} trials: trial {best.number}, {options}: mean final return "
        f"{best.value:.2f}\n  written to {run_dir / BEST_FILE} "
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
