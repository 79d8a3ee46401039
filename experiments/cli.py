"""An agent's command line: flags generated from the run config and the agent's config
(tyro), YAML config files, `--resume`, and errors in one style. `purerl NAME ...`
(`purerl.experiments.command`) and `python -m purerl.experiments.NAME ...` both run it."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from purerl.envs.host import HostEnvError
from purerl.experiments.engine.config import RunConfig

if TYPE_CHECKING:
    from purerl.experiments.engine.trainer import TrainResult


def agent_script(name: str) -> tuple[Callable[..., TrainResult], Callable[..., TrainResult]]:
    """`(run, main)` of the registered agent `name`'s command line:
    `run(run_config, agent_config) -> TrainResult` and `main(argv) -> TrainResult`."""

    def run(run: RunConfig, config: Any) -> TrainResult:
        """Trains the agent; returns its summary and trained agent states."""
        from purerl.agents import registry
        from purerl.experiments.engine.launch import launch

        return launch(registry.get(name), run, config)

    def main(argv: list[str] | None = None, prog: str | None = None) -> TrainResult:
        given = list(sys.argv[1:] if argv is None else argv)
        prog = prog or f"python -m purerl.experiments.{name}"
        args = parse(experiment_class(name), given, prog=prog)
        if args.run.resume:
            extend = any(
                a == "--total-timesteps" or a.startswith("--total-timesteps=") for a in given
            )
            return run(*resume_configs(args, name, extend=extend))
        from purerl.experiments.presets import given_options, with_preset

        preset = with_preset(args.agent, args.run, given_options(given), args.run.quiet)
        return run(*preset)

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


def format_error(message: str) -> str:
    """A user error in purerl's one style: `error: ` and what is wrong on the first line,
    what to do on the lines after it, indented. A message of one line is split after its
    first sentence (or clause), which says what is wrong."""
    lines = [line for line in str(message).strip().splitlines() if line.strip()]
    if not lines:
        return "error: (no message)"
    first, rest = lines[0], [line.strip() for line in lines[1:]]
    if not rest:
        for mark in (". ", "; "):
            at = first.replace("e.g. ", "e.g.\0").replace("i.e. ", "i.e.\0").find(mark)
            if 0 < at < len(first) - 2:
                first, rest = first[: at + 1], [first[at + 2 :].strip()]
                break
    return "\n".join([f"error: {first}", *(f"  {line}" for line in rest)])


def cli_main(fn: Callable[[], Any]) -> None:
    """Runs a script's main, turning user errors into purerl's one style (`format_error`),
    exit code 2. On a CPU it first makes one JAX device per core, for runs spread over them
    (`config.layout`)."""
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
        print(format_error(_with_agents_hint(str(e))), file=sys.stderr)
        sys.exit(2)
    except HostEnvError as e:  # The user's environment failed; its traceback is theirs.
        import traceback

        if e.__cause__ is not None:
            traceback.print_exception(e.__cause__.__cause__ or e.__cause__, file=sys.stderr)
        print(format_error(str(e)), file=sys.stderr)
        sys.exit(1)


def _with_agents_hint(message: str) -> str:
    """An action-space refusal with the registered agents that take the env's actions."""
    if not ("needs a discrete action space" in message or "needs a continuous" in message):
        return message
    from purerl.experiments.agent_lists import agents_for

    kind = "continuous" if "needs a discrete" in message else "discrete"
    names = agents_for(kind)
    return f"{message}\nAgents for {kind} actions: {', '.join(names)}." if names else message


def resume_configs(args: Any, agent_name: str, extend: bool = False) -> tuple[RunConfig, Any]:
    """The run and agent configs `args.run.resume` was started with, set to resume it; with
    `extend`, continued to `args.run.total_timesteps` (a finished run goes on, its curves and
    summary then covering the whole run). Other flags given with --resume are named in a
    warning, since they are not used. Nothing is written into a run that is refused."""
    from purerl.experiments.engine import rundir, trainee
    from purerl.experiments.engine.trainer import resumed_run

    run_dir = args.run.resume
    saved = rundir.read_config(run_dir, "--resume")
    if saved["agent"] != agent_name:
        raise ValueError(
            f"{run_dir} is a {saved['agent']} run; resume it with "
            f"purerl {saved['agent']} --resume {run_dir}"
        )
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
    who = trainee.from_saved(saved)
    longer = args.run.total_timesteps if extend else None
    own = {name: getattr(args.run, name) for name in given}
    return resumed_run(saved, str(run_dir), longer, who.build, **own), who.config


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
    config = (tyro.conf.OmitArgPrefixes,)
    if "-h" in argv or "--help" in argv:  # tyro's own page, drawn for this terminal.
        return tyro.cli(cls, args=argv, default=default, prog=prog, config=config)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return tyro.cli(cls, args=argv, default=default, prog=prog, config=config)
    except SystemExit as e:
        if e.code in (0, None):
            sys.stdout.write(out.getvalue())
            sys.stderr.write(err.getvalue())
            raise
        print(format_error(_plain(err.getvalue() + out.getvalue(), prog)), file=sys.stderr)
        raise SystemExit(2) from None


def _plain(panel: str, prog: str | None) -> str:
    """tyro's boxed error panel as plain lines: what is wrong, then the option's help."""
    lines = []
    for line in panel.splitlines():
        line = line.strip().strip("│╭╮╰╯").strip()
        if not line or set(line) <= set("─━═╭╮╰╯│-+| ") or line.startswith(("For full helptext",)):
            continue
        lines.append(line)
    if lines and lines[0].endswith(("error", "options", "arguments")) and len(lines) > 1:
        lines = lines[1:]  # The panel's title (its first line is the message itself).
    lines.append(f"{prog or 'the command'} --help lists every option")
    return "\n".join(lines)


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
            import difflib

            known = sorted(n for names in fields.values() for n in names)
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else "see --help for the options"
            raise ValueError(f"--config {path}: unknown option {key!r}.\n{hint}")
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
