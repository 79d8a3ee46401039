"""The command line: `purerl NAME ...` (or `python -m purerl.experiments NAME ...`) for every
registered agent, purerl's own and those of installed plugin packages, with flags generated
from the run config and the agent's config (tyro), YAML config files and `--resume`; and
the tools beside them (`purerl plot`, `enjoy`, `resume`, `check-envs`, `benchmark`).
`python -m purerl.experiments.ppo ...` is the same as `purerl ppo ...`."""

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
        preset = with_preset(args.agent, args.run, given_options(given), args.run.quiet)
        return run(*preset)

    return run, main


def given_options(argv: list[str]) -> set[str]:
    """The option names (`num_envs`) set on the command line or in its `--config` file."""
    names = set()
    for arg in argv:
        if arg.startswith("--"):
            flag = arg[2:].split("=", 1)[0].replace("-", "_")
            names.add(flag)
            names.add(flag.removeprefix("no_"))
    path = _config_path(argv)
    if path is not None:
        import yaml

        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            values = {}  # `parse` has refused an unreadable file already.
        names |= {str(k).replace("-", "_") for k in values} if isinstance(values, dict) else set()
    return names


def preset_for(config: Any, env: str, action_space: Any) -> tuple[str, dict[str, Any]]:
    """The agent's preset for this env, `(its name, the option values)`: the config class's
    `presets` by action-space kind ("discrete" / "continuous"), then by env id on top."""
    import gymnasium

    presets = getattr(type(config), "presets", None) or {}
    kind = "continuous" if isinstance(action_space, gymnasium.spaces.Box) else "discrete"
    values: dict[str, Any] = {}
    names = []
    for key in (kind, env.removeprefix("gymnasium:")):
        if key in presets:
            values.update(presets[key])
            names.append(f"{key} actions" if key == kind else key)
    return " + ".join(names), values


def with_preset(
    config: Any, run: RunConfig, given: set[str], quiet: bool = False
) -> tuple[RunConfig, Any]:
    """`(run, config)` with the agent's preset for `run.env` in the options the user did not
    set (a preset may set run options too, e.g. `total_timesteps`), named on one line: an
    agent's bare command is a sensible start on every env family its config has a preset
    for, and any flag overrides it."""
    if not getattr(type(config), "presets", None):
        return run, config
    from purerl import envs
    from purerl.experiments.engine import distributed

    try:
        if envs.resolve(run.env)[0] == "device":  # Its spaces start JAX: join the others first.
            distributed.initialize(run)
        space = envs.spec(run.env, run.env_params).action_space
    except Exception:  # An env that cannot be made: training says why, clearly.
        return run, config
    name, values = preset_for(config, run.env, space)
    values = {k: v for k, v in values.items() if k not in given}
    if not values:
        return run, config
    if not quiet:
        flags = " ".join(
            f"--{k.replace('_', '-')} {v:g}"
            if isinstance(v, float)
            else f"--{k.replace('_', '-')} {v}"
            for k, v in values.items()
        )
        print(f"preset for {name}: {flags} (any of these flags overrides it)", flush=True)
    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    run = dataclasses.replace(run, **{k: v for k, v in values.items() if k in run_fields})
    agent = {k: v for k, v in values.items() if k not in run_fields}
    return run, dataclasses.replace(config, **agent)


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


TOOLS = {  # Commands beside the agents: (module, what it does).
    "plot": ("purerl.experiments.plot", "draw learning curves of run directories"),
    "enjoy": ("purerl.experiments.enjoy", "run a trained policy, report returns, record video"),
    "resume": (None, "continue (or, with --total-timesteps, extend) any run directory"),
    "check-envs": ("purerl.experiments.check_envs", "try every env with every agent"),
    "benchmark": ("purerl.experiments.benchmark", "time agents' training against peers"),
    "benchmark-replay": ("purerl.experiments.benchmark_replay", "time the replay buffers"),
}


def usage() -> str:
    """`purerl --help`: the commands, and every registered agent with its config class."""
    from purerl import __version__
    from purerl.agents import registry

    built_in = set(registry.built_in())
    lines = [
        f"purerl {__version__}: reinforcement-learning agents as pure JAX functions.",
        "",
        "usage: purerl AGENT [--env ENV] [OPTIONS]   train an agent (purerl AGENT --help)",
        "       purerl COMMAND [ARGS]",
        "",
        "agents:",
    ]
    for name in registry.names():
        entry = registry.get(name)
        origin = "" if name in built_in else "  (plugin)"
        lines.append(f"  {name:<18} {entry.source}{origin}")
    lines += ["", "commands:"]
    lines += [f"  {name:<18} {what}" for name, (_, what) in TOOLS.items()]
    lines += [
        "",
        "  --version          print purerl's version",
        "",
        "Agents of other packages join the list through the 'purerl.agents' entry point group.",
    ]
    return "\n".join(lines)


def resume_main(argv: list[str]) -> Any:
    """`purerl resume RUN_DIR [--total-timesteps N] [--quiet]`: continues any run, whichever
    agent trained it (a registered one, or one of your own recorded by its factory)."""
    import argparse

    from purerl.experiments.engine import rundir

    parser = argparse.ArgumentParser(
        prog="purerl resume",
        description="Continue a run from its newest checkpoint with the configs it was started "
        "with; with --total-timesteps N (more than it has), extend a finished run.",
    )
    parser.add_argument("run_dir", help="the run directory (it holds config.json)")
    parser.add_argument(
        "--total-timesteps", type=int, default=None, help="extend the run to N env steps"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the closing line")
    args = parser.parse_args(argv)
    saved = rundir.read_config(args.run_dir, "purerl resume")
    flags = ["--resume", args.run_dir] + (["--quiet"] if args.quiet else [])
    if args.total_timesteps is not None:
        flags += ["--total-timesteps", str(args.total_timesteps)]
    if saved.get("factory") or not saved.get("agent_source"):
        from purerl.experiments.engine.trainer import train_agent

        if not saved.get("factory"):
            raise ValueError(
                f"{args.run_dir} was trained by an agent of your own that recorded no "
                "factory; resume it from Python: purerl.train(AGENT, ..., resume=RUN_DIR)."
            )
        longer = None
        if args.total_timesteps is not None:
            longer = RunConfig(total_timesteps=args.total_timesteps, quiet=args.quiet)
        elif args.quiet:
            longer = RunConfig(total_timesteps=saved["run"]["total_timesteps"], quiet=True)
        recipe = saved.get("recipe") or {}
        return train_agent(
            saved["factory"],
            run=longer,
            num_envs=recipe.get("num_envs"),
            discount=recipe.get("discount"),
            name=saved["agent"],
            resume=args.run_dir,
        )
    return agent_script(saved["agent"])[1](flags, prog=f"purerl {saved['agent']}")


def purerl_main(argv: list[str] | None = None) -> None:
    """The `purerl` command (and `python -m purerl.experiments`)."""
    import importlib

    argv = list(sys.argv[1:] if argv is None else argv)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # As `python -m` does: `module:Name` envs and agents here.
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    if argv[0] == "--version":
        from purerl import __version__

        print(f"purerl {__version__}")
        return
    command, rest = argv[0], argv[1:]
    if command in TOOLS:
        module = TOOLS[command][0]
        if module is None:
            cli_main(lambda: resume_main(rest))
        else:
            sys.argv = [f"purerl {command}", *rest]
            result = importlib.import_module(module).main(rest)
            if isinstance(result, int) and result:
                sys.exit(result)
        return
    from purerl.agents import registry

    if command.startswith("-"):
        _refuse(f"purerl: {command} needs an agent first", "purerl ppo --env CartPole-v1 ...")
    try:
        registry.get(command)
    except ValueError:
        import difflib

        known = registry.names() + list(TOOLS)
        close = difflib.get_close_matches(command, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        _refuse(
            f"unknown agent or command {command!r}",
            f"{hint}purerl --help lists them: {', '.join(known)}",
        )
    sys.argv = [f"purerl {command}", *rest]
    cli_main(lambda: agent_script(command)[1](rest, prog=f"purerl {command}"))


def _refuse(what: str, todo: str) -> None:
    """A user error, in the one style of every error here: what is wrong, then what to do."""
    print(f"error: {what}\n  {todo}", file=sys.stderr)
    sys.exit(2)
