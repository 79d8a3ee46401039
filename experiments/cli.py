"""The command line: one script per registered agent (`python -m purerl.experiments.NAME`),
flags generated from the run config and the agent's config (tyro), YAML config files and
`--resume`."""

from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from purerl.envs.host import HostEnvError
from purerl.experiments.engine.config import RunConfig


def agent_script(name: str) -> tuple[Callable[..., dict[str, Any]], Callable[..., dict[str, Any]]]:
    """`(run, main)` of the registered agent `name`'s experiment script:
    `run(run_config, agent_config) -> summary` and `main(argv) -> summary`."""
    from purerl.agents import registry

    entry = registry.get(name)

    def run(run: RunConfig, config: Any) -> dict[str, Any]:
        """Trains the agent and returns the run summary."""
        from purerl.experiments.engine.trainer import train

        return train(entry, run, config)

    def main(argv: list[str] | None = None) -> dict[str, Any]:
        args = parse(experiment_class(name), argv, prog=f"python -m purerl.experiments.{name}")
        if args.run.resume:
            given = list(sys.argv[1:] if argv is None else argv)
            extend = any(
                a == "--total-timesteps" or a.startswith("--total-timesteps=") for a in given
            )
            return run(*resume_configs(args, name, extend=extend))
        return run(args.run, args.agent)

    return run, main


def experiment_class(name: str) -> type:
    """The CLI's dataclass for agent `name`: `run` (RunConfig) and `agent` (its config)."""
    from purerl.agents import registry

    config_class = registry.get(name).config_class()
    cls = dataclasses.make_dataclass(
        f"{name.upper()}Experiment",
        [
            ("run", RunConfig, dataclasses.field(default_factory=RunConfig)),
            ("agent", config_class, dataclasses.field(default_factory=config_class)),
        ],
        frozen=True,
        kw_only=True,
    )
    cls.__doc__ = f"Train {name} on any environment, data-parallel over all local devices."
    return cls


def cli_main(fn: Callable[[], Any]) -> None:
    """Runs a script's main, turning configuration errors into a one-line message. On a CPU
    it first makes one JAX device per core, for runs spread over them (`config.layout`)."""
    from purerl.experiments.engine.config import use_cpu_cores

    if not any(a == "--coordinator" or a.startswith("--coordinator=") for a in sys.argv):
        use_cpu_cores()
    try:
        fn()
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}" if str(e) else "interrupted", file=sys.stderr)
        sys.exit(130)
    except (ValueError, TypeError, FloatingPointError) as e:
        if os.environ.get("PURERL_TRACEBACK"):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except HostEnvError as e:  # The user's environment failed; its traceback is theirs.
        import traceback

        if e.__cause__ is not None:
            traceback.print_exception(e.__cause__.__cause__ or e.__cause__, file=sys.stderr)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def resume_configs(args: Any, agent_name: str, extend: bool = False) -> tuple[RunConfig, Any]:
    """The run and agent configs `args.run.resume` was started with, set to resume it; with
    `extend`, continued to `args.run.total_timesteps` (a finished run goes on, its curves and
    summary then covering the whole run). Other flags given with --resume are named in a
    warning, since they are not used."""
    from purerl.experiments.engine.policy import read_config

    run_dir = args.run.resume
    # Each process of a multi-host run gives its own place in it; the rest is the run's.
    given = ("quiet", "rebuild_envs", "coordinator", "num_processes", "process_id")
    given += ("coordinator_timeout",)
    used = {"resume", *given} | ({"total_timesteps"} if extend else set())
    ignored = [
        f"--{f.name.replace('_', '-')}"
        for part in (args.run, args.agent)
        for f in dataclasses.fields(part)
        if f.name not in used and getattr(part, f.name) != f.default
    ]
    if ignored:
        print(
            f"warning: --resume continues {run_dir} with the configs it was started with; "
            f"ignoring {', '.join(ignored)}",
            file=sys.stderr,
        )
    saved = read_config(Path(run_dir))
    if saved["agent"] != agent_name:
        raise ValueError(
            f"{run_dir} is a {saved['agent']} run; resume it with "
            f"python -m purerl.experiments.{saved['agent']} --resume {run_dir}"
        )
    run = RunConfig(
        **{
            **saved["run"],
            "resume": str(run_dir),
            "run_dir": str(run_dir),
            **{name: getattr(args.run, name) for name in given},
        }
    )
    config = saved["agent_config"]
    if extend:
        from purerl import envs
        from purerl.experiments.engine.trainer import extended, run_plan

        host = envs.resolve(run.env)[0] == "host"
        entry = saved["entry"]
        before = run_plan(run, config.env_steps_per_update, entry.off_policy, host)
        run = extended(run, before, args.run.total_timesteps)
        print(
            f"note: extending {run_dir} from {before.total_steps:,} to {run.total_timesteps:,} "
            "env steps per seed. A decaying learning-rate schedule (and any other horizon set "
            "by the run's length) is stretched over the new length from here on.",
            file=sys.stderr,
        )
    return run, config


def parse(cls: type, argv: list[str] | None = None, prog: str | None = None) -> Any:
    """Parses a flat CLI (`--env`, `--num-envs`, `--learning-rate`, ...) into `cls`, an
    experiment dataclass with `run` and `agent` fields. `--config FILE.yaml` gives defaults
    by flag name (`num_envs: 16` or `num-envs: 16`); flags on the command line override it."""
    import tyro

    argv = list(sys.argv[1:] if argv is None else argv)
    default = None
    path = _config_path(argv)
    if path is not None:
        default = _from_yaml(cls, path)
    return tyro.cli(cls, args=argv, default=default, prog=prog, config=(tyro.conf.OmitArgPrefixes,))


def _config_path(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def _from_yaml(cls: type, path: str) -> Any:
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as e:
        raise ValueError(f"Cannot read --config {path}: {e}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"--config {path} is not valid YAML: {e}") from None
    if not isinstance(values, dict):
        raise ValueError(f"--config {path} must map flag names to values.")
    parts = {f.name: f.default_factory() for f in dataclasses.fields(cls)}  # run, agent
    fields = {name: {f.name for f in dataclasses.fields(part)} for name, part in parts.items()}
    chosen: dict[str, dict[str, Any]] = {name: {} for name in parts}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        owner = next((part for part, names in fields.items() if name in names), None)
        if owner is None:
            known = sorted(n for names in fields.values() for n in names)
            raise ValueError(f"--config {path}: unknown option {key!r}; options are {known}.")
        hint = typing.get_type_hints(type(parts[owner]))[name]
        if name == "sweep" and isinstance(value, dict):  # {name: [values]} as NAME=V1,V2.
            value = [
                f"{k}={','.join(map(str, v if isinstance(v, list) else [v]))}"
                for k, v in value.items()
            ]
        chosen[owner][name] = _coerce(value, hint, f"--config {path}: {key}")
    return cls(**{name: dataclasses.replace(parts[name], **chosen[name]) for name in parts})


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` from a YAML file as the field's type `hint`, converted the way the command
    line converts its strings (`1e-3` is a float, `64` a one-element tuple where a tuple is
    wanted), or a ValueError naming the key, the file, the expected type and the value."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(value, option, where)
            except ValueError as e:
                errors.append(e)
        raise errors[0]
    if origin is tuple:
        item = args[0] if args else Any
        items = value if isinstance(value, list | tuple) else [value]
        return tuple(_coerce(v, item, where) for v in items)
    if origin is typing.Literal:
        if value in args:
            return value
        raise ValueError(f"{where} must be one of {list(args)}; got {value!r}.")

    def wrong() -> ValueError:
        return ValueError(f"{where} must be {_type_name(hint)}; got {value!r}.")

    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        raise wrong()
    if hint is int:
        if isinstance(value, bool):
            raise wrong()
        if isinstance(value, int):
            return value
        try:
            number = float(str(value).replace("_", ""))
        except ValueError:
            raise wrong() from None
        if not number.is_integer():
            raise wrong()
        return int(number)
    if hint is float:
        if isinstance(value, bool):
            raise wrong()
        try:
            return float(str(value).replace("_", "")) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise wrong() from None
    if hint is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise wrong()
    return value
