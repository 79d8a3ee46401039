"""The `purerl` command (and `python -m purerl.experiments`): `purerl AGENT ...` trains any
registered agent, purerl's own and those of installed plugin packages; the tools beside them
are `purerl plot`, `enjoy`, `resume`, `check-envs`, `benchmark`, `benchmark-replay`;
`purerl --help` lists both, `purerl --version` says which purerl this is."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Iterator
from typing import Any

# The collector's first threshold in the `purerl` process: a run's imports and tracing make
# millions of objects that live to its end, which Python's default (700) sweeps hundreds of
# times over (benchmarks/startup.py times it).
GC_THRESHOLD = 10_000

TOOLS = {  # Commands beside the agents: (module, what it does).
    "plot": ("purerl.experiments.plot", "draw learning curves of run directories"),
    "enjoy": ("purerl.experiments.enjoy", "run a trained policy, report returns, record video"),
    "resume": (None, "continue (or, with --total-timesteps, extend) any run directory"),
    "check-envs": ("purerl.experiments.check_envs", "try every env with every agent"),
    "benchmark": ("purerl.experiments.benchmark", "time agents' training against peers"),
    "benchmark-replay": ("purerl.experiments.benchmark_replay", "time the replay buffers"),
    "benchmark-revisions": (
        "purerl.experiments.benchmark_revisions",
        "run a command on an earlier revision and this one, alternating",
    ),
    "tune": (
        "purerl.experiments.tune",
        "search an agent's options with Optuna, a batch of trials per program",
    ),
    "benchmark-ray": (
        "purerl.experiments.benchmark_ray",
        "env steps/s of sync, async and Ray env workers on a slow env",
    ),
    "benchmark-tune": (
        "purerl.experiments.benchmark_tune",
        "time purerl tune against the same trials one process each",
    ),
    "suite": (
        "purerl.experiments.suite",
        "train every agent on its environments, write the results page",
    ),
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

    from purerl.experiments.cli import agent_script
    from purerl.experiments.engine import rundir
    from purerl.experiments.engine.config import RunConfig

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
    """The `purerl` command (and `python -m purerl.experiments`). Called without `argv` it is
    the process's own command, and sets the process up for one (`as_the_process`)."""
    if argv is not None:
        run_command(list(argv))
        return
    with as_the_process():
        run_command(sys.argv[1:])


@contextlib.contextmanager
def as_the_process() -> Iterator[None]:
    """The garbage collector of a process that runs one command and ends: it collects
    young objects every `GC_THRESHOLD` allocations (not every 700, while the imports and
    tracing build what lives to the end), and at the end it freezes what is left, so
    Python's exit does not sweep it once more (~0.6 s of CPU after a run); what is left
    goes with the process."""
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    try:
        yield
    finally:
        gc.freeze()


def run_command(argv: list[str]) -> None:
    """Runs the command line `argv` (without the program's name)."""
    import importlib

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # As `python -m` does: `module:Name` envs and agents here.
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    if argv[0] == "--version":
        from purerl import __version__

        print(f"purerl {__version__}")
        return
    from purerl.experiments.cli import agent_script, cli_main

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
