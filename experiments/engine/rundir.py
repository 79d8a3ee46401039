"""The run directory: where a run's config, metrics, checkpoints, policy and summary live.

`config.json` is written when a run starts; it names the agent (and how to rebuild it: the
registered agent's config class, or the factory of an agent of your own) and both configs,
so that the run can be loaded, resumed, extended and fine-tuned without the code that
started it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from purerl.experiments.engine.checkpoint import CHECKPOINT_DIR
from purerl.experiments.engine.config import RunConfig, default_run_dir

CONFIG_FILE = "config.json"
POLICY_FILE = "policy.msgpack"
SUMMARY_FILE = "summary.json"


def holds_run(run_dir: Path) -> bool:
    """Whether `run_dir` holds something of a run to protect: a checkpoint, a saved policy or
    a summary (a directory with only the config of a start that failed holds none)."""
    checkpoints = Path(run_dir) / CHECKPOINT_DIR
    return (
        (run_dir / SUMMARY_FILE).exists()
        or (run_dir / POLICY_FILE).exists()
        or (checkpoints.is_dir() and any(checkpoints.iterdir()))
    )


def check_run_dir(run_dir: str | Path, flag: str = "--resume") -> Path:
    """`run_dir` as a path, or a clear error where it is no run directory."""
    path = Path(run_dir)
    if not path.exists():
        raise ValueError(f"{flag} {path}: no such directory. Give a run directory (runs/...).")
    if not path.is_dir():
        raise ValueError(
            f"{flag} {path} is a file, not a run directory; give the directory a run wrote "
            "(it holds config.json)."
        )
    if not (path / CONFIG_FILE).is_file():
        raise ValueError(
            f"{flag} {path} has no {CONFIG_FILE}, so it is not a purerl run directory; give "
            "the directory a run wrote (runs/AGENT_ENV_TIME)."
        )
    return path


def write_config(run_dir: Path, run: RunConfig, record: dict[str, Any], config: Any) -> None:
    """Writes `config.json`: the agent's record (its name and how to rebuild it), the run
    config and the agent's config."""
    from purerl import __version__

    saved = {
        **record,
        "purerl_version": __version__,
        "run": dataclasses.asdict(run),
        "agent_config": dataclasses.asdict(config) if config is not None else None,
    }
    (Path(run_dir) / CONFIG_FILE).write_text(json.dumps(saved, indent=2))


def read_config(run_dir: str | Path, flag: str = "run directory") -> dict[str, Any]:
    """A run directory's `config.json` as written (the agent config as a dict)."""
    path = check_run_dir(run_dir, flag) / CONFIG_FILE
    try:
        saved = json.loads(path.read_text())
        saved["agent"], saved["run"]  # noqa: B018 - both must be there.
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a purerl run config ({e!r}).") from None
    return saved


def prepare(name: str, run: RunConfig, record: dict[str, Any], config: Any, write: bool) -> Path:
    """The new run's directory, checked (every process checks) and, with `write`, made and
    given the config (process 0 only in a multi-host run). A resumed run's is its own."""
    if run.resume:  # Its new length is written once its checkpoint has loaded (`record_length`).
        return Path(run.resume)
    run_dir = Path(run.run_dir) if run.run_dir else default_run_dir(name, run.env)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--run-dir {run_dir} is a file, not a directory; choose another.")
    if holds_run(run_dir):
        raise ValueError(
            f"{run_dir} already holds a run. Continue it with --resume {run_dir}, or "
            "choose another --run-dir."
        )
    if not write:
        return run_dir
    if (run_dir / CONFIG_FILE).exists():  # A start that failed before training: not a run.
        print(
            f"note: {run_dir} holds the config of a run that never trained (no checkpoint, "
            "policy or summary); starting afresh there.",
            file=sys.stderr,
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, run, record, config)
    return run_dir


def record_length(run_dir: Path, run: RunConfig) -> None:
    """Writes a resumed run's length into its config, where `--total-timesteps` extended it.
    Called after its checkpoint restored: a resume that fails leaves the config as it was,
    so the same command can be retried."""
    path = run_dir / CONFIG_FILE
    saved = json.loads(path.read_text())
    length = {"total_timesteps": run.total_timesteps, "num_logs": run.num_logs}
    if any(saved["run"].get(k) != v for k, v in length.items()):
        saved["run"].update(length)
        path.write_text(json.dumps(saved, indent=2))
